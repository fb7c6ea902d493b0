"""Make an autograded notebook inert: nothing a submission wrote may run script where it is viewed.

nbgrader's formgrader shows each autograded notebook to the instructor inside a page that holds their Jupyter
token, and ``generate_feedback`` turns it into HTML for the student; both go through nbconvert's HTML
templates, which put outputs, Markdown and some metadata into the page as they are (``text/html`` outputs
verbatim, ``application/javascript`` in a ``<script>``, Markdown with its raw HTML, image data inside an
``src`` attribute, the grade_id inside ``id="..."``). The sandbox stops a submission's code from reaching
the grader; this module stops what that code *displayed* (and what the student typed into Markdown) from
running in the instructor's browser.

``sanitise_notebook`` rewrites the notebook in place, from allow-lists rather than lists of known attacks:

- outputs keep only text/plain, text/html, text/markdown, text/latex, image/png and image/jpeg (valid base64)
  and application/json; HTML goes through ``nh3`` (the ammonia sanitiser): a fixed set of formatting tags,
  no event handlers, no ids, no classes but pandas' ``dataframe``, style limited to a few visual properties,
  links only to http(s) and mailto, images only from data inside the notebook (png, jpeg, gif);
- Markdown (cells and outputs) is parsed with the same parser nbconvert renders it with: when it is nothing
  but Markdown (no raw HTML, safe links and images), it is left as it is; otherwise it is replaced by its own
  rendering, sanitised like HTML outputs;
- raw cells that nbconvert copies into HTML are sanitised like HTML outputs;
- cell attachments keep only png/jpeg with valid base64;
- metadata keeps only what grading and display need (``nbgrader`` with checked types and a plain grade_id,
  the course's ``given`` cells as strings, image width/height, tags, kernelspec, language_info); widget state
  is removed.

Honest notebooks (printed text, matplotlib PNGs, plain HTML tables, ordinary Markdown) come through looking
the same, and give no notes.
"""
from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

import nbformat
import nh3

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

KEPT_MIMETYPES = {"text/plain", "text/html", "text/markdown", "text/latex", "image/png", "image/jpeg",
                  "application/json"}
_BASE64 = re.compile(r"[A-Za-z0-9+/\r\n]*={0,2}[\r\n]*")
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif);base64,(.+)", re.S)
_LINK = re.compile(r"(https?://|mailto:)\S*", re.I)
_FRAGMENT = re.compile(r"#[\w.-]*")
_GRADE_ID = re.compile(r"[\w.-]{1,200}")
_CSS_FUNCTION = re.compile(r"([a-z-]*)\s*\(", re.I)
_SAFE_CSS_FUNCTIONS = {"rgb", "rgba", "hsl", "hsla"}

# The HTML policy. Tags: nh3's defaults (formatting, lists, tables, links, images; no script, style, form,
# iframe, object, embed, svg, math, meta, base, link). Content of the tags below goes too, not only the tag.
_DROPPED_WITH_CONTENT = {"script", "style", "noscript", "template", "iframe", "object", "svg", "math",
                         "textarea", "title", "xmp", "noembed", "noframes"}
_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES["*"] = {"title", "lang", "dir", "style"}
_ATTRIBUTES["table"] = _ATTRIBUTES.get("table", set()) | {"border"}
# Visual properties only: nothing that positions, hides, overlays or loads (no position, display, z-index,
# margin, background, content, url()).
_STYLE_PROPERTIES = {"color", "background-color", "text-align", "vertical-align", "font-weight", "font-style",
                     "font-size", "font-family", "text-decoration", "white-space", "border",
                     "border-collapse", "border-color", "border-style", "border-width", "padding", "width",
                     "min-width"}

# Markdown that renders to nothing but Markdown's own HTML (mistune token types, nbconvert's plugins).
_MARKDOWN_TOKENS = {"paragraph", "text", "emphasis", "strong", "codespan", "linebreak", "softbreak",
                    "blank_line", "heading", "thematic_break", "block_text", "block_code", "block_quote",
                    "list", "list_item", "task_list_item", "strikethrough", "table", "table_head",
                    "table_body", "table_row", "table_cell", "def_list", "def_list_head", "def_list_item",
                    "block_math", "inline_math", "latex_environment", "link", "image"}


def sanitise_notebook(nb: nbformat.NotebookNode) -> list[str]:
    """Remove active content from the nbformat v4 notebook ``nb`` in place; return notes on what was removed
    (``"cell 7: removed <script>, onerror= from text/html output"``), empty for an honest notebook."""
    notes = []
    widgets = nb.metadata.get("widgets")
    nb.metadata = nbformat.from_dict({k: v for k, v in nb.metadata.items()
                                      if k in ("kernelspec", "language_info") and isinstance(v, dict)})
    if widgets:
        notes.append("notebook: widget state removed")
    for i, cell in enumerate(nb.cells):
        notes += [f"cell {i}: {note}" for note in _sanitise_cell(cell)]
    return notes


def sanitise_file(path: str | Path) -> list[str]:
    """Sanitise the notebook file at ``path`` in place (``sanitise_notebook``); returns the notes."""
    nb = nbformat.read(path, as_version=4)
    notes = sanitise_notebook(nb)
    nbformat.write(nb, path)
    return notes


def _sanitise_cell(cell: nbformat.NotebookNode) -> list[str]:
    notes = _sanitise_cell_metadata(cell)
    if cell.cell_type == "markdown":
        notes += _sanitise_attachments(cell)
        source, removed = _inert_markdown(cell.source, cell.get("attachments", {}))
        if source is not None:
            cell.source = source
            notes += [f"removed {removed} from Markdown"] if removed else []
    elif cell.cell_type == "raw" and str(cell.metadata.get("raw_mimetype", "")).lower() in ("", "text/html"):
        cell.source, removed = _clean_and_report(cell.source)
        notes += [f"removed {removed} from a raw cell"] if removed else []
    elif cell.cell_type == "code":
        if not isinstance(cell.get("execution_count"), (int, type(None))):
            cell.execution_count = None
        for output in cell.get("outputs", []):
            notes += _sanitise_output(output)
    return notes


def _sanitise_output(output: nbformat.NotebookNode) -> list[str]:
    """Allow-listed mimetypes only, each made inert; metadata reduced to image sizes."""
    if "data" not in output:  # stream and error outputs: nbconvert escapes their text
        return []
    notes = []
    for mime in list(output.data):
        value = output.data[mime]
        if mime not in KEPT_MIMETYPES or (mime.startswith("image/") and not _is_base64(value)):
            del output.data[mime]
            notes.append(f"{mime} output removed")
        elif mime == "text/html":
            output.data[mime], removed = _clean_and_report(_text(value))
            notes += [f"removed {removed} from text/html output"] if removed else []
        elif mime == "text/markdown":
            source, removed = _inert_markdown(_text(value), {})
            if source is not None:
                output.data[mime] = source
                notes += [f"removed {removed} from text/markdown output"] if removed else []
    images = {}
    for mime in ("image/png", "image/jpeg"):
        size = {k: v for k, v in output.get("metadata", {}).get(mime, {}).items()
                if k in ("width", "height") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if size and mime in output.data:
            images[mime] = size
    if "metadata" in output:
        output.metadata = nbformat.from_dict(images)
    return notes


def _sanitise_cell_metadata(cell: nbformat.NotebookNode) -> list[str]:
    """Keep only what grading and display need; nbgrader metadata with its own types and a plain grade_id
    (the formgrader writes the grade_id into HTML attributes unescaped)."""
    meta, notes = cell.metadata, []
    kept = {k: v for k, v in meta.items()
            if (k in ("deletable", "editable", "collapsed") and isinstance(v, bool))
            or (k == "tags" and isinstance(v, list) and all(isinstance(t, str) for t in v))
            or (k == "jupyter" and isinstance(v, dict) and all(isinstance(x, bool) for x in v.values()))
            or (k == "raw_mimetype" and isinstance(v, str))
            or (k == "course" and _plain_course(v))}
    if "nbgrader" in meta:
        nbgrader = _checked_nbgrader(meta["nbgrader"])
        if nbgrader is None:
            notes.append("nbgrader metadata removed (not nbgrader's format, or a grade_id that is not plain)")
        else:
            kept["nbgrader"] = nbgrader
    cell.metadata = nbformat.from_dict(kept)
    return notes


def _plain_course(value: Any) -> bool:
    """The course's own cell metadata (``autograder.publish.answers``): ``{"given" or "loads": {notebook:
    [names]}}``, strings only."""
    return (isinstance(value, dict) and set(value) <= {"given", "loads"} and all(
        isinstance(given, dict) and all(isinstance(nb, str) and isinstance(names, list)
                                        and all(isinstance(n, str) for n in names)
                                        for nb, names in given.items())
        for given in value.values()))


_NBGRADER_TYPES = {"grade": bool, "solution": bool, "locked": bool, "task": bool, "grade_id": str,
                   "points": (int, float), "schema_version": int, "cell_type": str, "checksum": str}


def _checked_nbgrader(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or not _GRADE_ID.fullmatch(str(value.get("grade_id", "x"))):
        return None
    if not all(isinstance(value[k], t) for k, t in _NBGRADER_TYPES.items() if k in value):
        return None
    if value.get("cell_type", "code") not in ("code", "markdown"):
        return None
    return {k: v for k, v in value.items() if k in _NBGRADER_TYPES}


def _sanitise_attachments(cell: nbformat.NotebookNode) -> list[str]:
    """Markdown attachments: png and jpeg with valid base64 only (nbconvert writes them into ``src``)."""
    if "attachments" not in cell:
        return []
    kept, dropped = {}, []
    for name, bundle in cell.attachments.items():
        images = {m: d for m, d in bundle.items() if m in ("image/png", "image/jpeg") and _is_base64(d)} \
            if isinstance(bundle, dict) else {}
        if images:
            kept[name] = images
        if not isinstance(bundle, dict) or len(images) < len(bundle):
            dropped.append(name)
    cell.attachments = nbformat.from_dict(kept)
    return [f"attachment {name!r} removed (only png and jpeg are kept)" for name in dropped]


def _inert_markdown(source: str, attachments: Mapping[str, Any]) -> tuple[str | None, str]:
    """(None, "") when ``source`` is plain Markdown; else (its sanitised rendering, what was removed).

    The rendering is one line of HTML that starts with ``<div>``, so that Markdown renders it back as one raw
    HTML block, as it is (and sanitising it again changes nothing)."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    tokens, _ = MarkdownWithMath(renderer=None).parse(source)
    unsafe, names = _unsafe_markdown(tokens, attachments)
    if not unsafe:
        return None, ""
    # nbconvert raises on these
    stubs = {name: {"image/png": ""} for name in names if name not in attachments}
    renderer = IPythonRenderer(escape=False, attachments={**attachments, **stubs}, exclude_anchor_links=True)
    clean, removed = _clean_and_report(MarkdownWithMath(renderer=renderer).render(source).strip())
    one_line = clean.replace("\r", "").replace("\n", "&#10;")
    return (one_line if one_line.startswith("<div>") else f"<div>{one_line}</div>"), removed


def _unsafe_markdown(tokens: list[dict[str, Any]], attachments: Mapping[str, Any]) -> tuple[bool, set[str]]:
    """(whether the tokens hold anything but Markdown, the attachment names they use)."""
    unsafe, names = False, set()
    for token in tokens:
        kind, attrs = token["type"], token.get("attrs") or {}
        url = str(attrs.get("url", ""))
        if kind == "image" and url.startswith("attachment:"):
            names.add(url[len("attachment:"):])
        child_unsafe, child_names = _unsafe_markdown(token.get("children") or [], attachments)
        unsafe = unsafe or child_unsafe or _unsafe_token(kind, attrs, url, attachments)
        names |= child_names
    return unsafe, names


def _unsafe_token(kind: str, attrs: dict[str, Any], url: str, attachments: Mapping[str, Any]) -> bool:
    """Raw HTML or any token type not known to be plain; a mermaid block (nbconvert copies its text into the
    page unescaped); a link not to http(s), mailto or a fragment; an image not from the notebook's data."""
    if kind not in _MARKDOWN_TOKENS:
        return True
    if kind == "block_code":
        return str(attrs.get("info") or "").strip().lower().startswith("mermaid")
    if kind == "link":
        return not (_LINK.fullmatch(url) or _FRAGMENT.fullmatch(url))
    if kind == "image":
        return not (_data_image(url)
                    or (url.startswith("attachment:") and url[len("attachment:"):] in attachments))
    return False


def _attribute_filter(tag: str, name: str, value: str) -> str | None:
    """Beyond nh3's checks: images only from data in the notebook, links never to data:, style without
    functions that load or compute (url(), expression(), var(), image-set()...)."""
    if name == "src":
        return value if _data_image(value) else None
    if name in ("href", "cite"):
        return value if _LINK.fullmatch(value) else None
    if name == "style":
        functions = {f.lower() for f in _CSS_FUNCTION.findall(value)}
        return None if "\\" in value or "/*" in value or functions - _SAFE_CSS_FUNCTIONS else value
    return value


_CLEANER = nh3.Cleaner(tags=set(nh3.ALLOWED_TAGS), clean_content_tags=_DROPPED_WITH_CONTENT,
                       attributes=_ATTRIBUTES, attribute_filter=_attribute_filter,
                       url_schemes={"http", "https", "mailto", "data"}, url_relative="deny",
                       allowed_classes={"table": {"dataframe"}}, filter_style_properties=_STYLE_PROPERTIES)


def clean_html(html: str) -> str:
    """``html`` sanitised by nh3 with this module's policy."""
    return _CLEANER.clean(html)


def _clean_and_report(html: str) -> tuple[str, str]:
    """(sanitised html, a short list of the tags and attributes that went, "" when none did)."""
    clean = clean_html(html)
    removed = _inventory(html) - _inventory(clean)
    return clean, ", ".join(sorted(removed)[:8])


class _Inventory(HTMLParser):
    """The tags and attribute names in an HTML text: only to say what the sanitiser removed, never to
    decide."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = Counter()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found[f"<{tag}>"] += 1
        self.found.update(f"{name}=" for name, _ in attrs if name != "rel")
        self.found.update(f"style {d.split(':')[0].strip().lower()}" for name, value in attrs
                          if name == "style" for d in (value or "").split(";") if ":" in d)


def _inventory(html: str) -> Counter[str]:
    parser = _Inventory()
    parser.feed(html)
    parser.close()
    return parser.found


def _data_image(url: str) -> bool:
    match = _DATA_IMAGE.fullmatch(url.strip())
    return bool(match) and _is_base64(match.group(2))


def _is_base64(value: object) -> bool:
    return isinstance(value, str) and bool(_BASE64.fullmatch(value))


def _text(value: object) -> str:
    return "".join(value) if isinstance(value, list) else str(value)
