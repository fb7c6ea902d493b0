"""Nothing a submission wrote runs script where its autograded notebook is viewed
(autograder.grade.active_content).

Unit tests feed crafted notebooks to ``sanitise_notebook``: every way we know of to carry script (HTML
outputs, script mimetypes, SVG, widgets, image data that is not base64, output and cell metadata, Markdown
with raw HTML, attachments, raw cells) comes out inert, and an honest notebook comes out unchanged.

The slow test grades a submission that displays script in every one of those ways with the class grader, then
opens, in headless Chromium, the autograded notebook rendered as nbgrader's formgrader renders it and the
feedback HTML, and checks that no payload ran (page title, a global, a request to a loopback server). Its
control renders the same submission graded by plain nbgrader (no sanitiser) the same way: there the payloads
do run, so the test can see them.
"""
import base64
import copy
import html
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from autograder.grade.active_content import sanitise_notebook
from autograder.publish.layout import ROOT

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(range(64))).decode()
TABLE = ('<div>\n<table border="1" class="dataframe">\n  <thead>\n    <tr style="text-align: right;">\n'
         '      <th></th>\n      <th>loss</th>\n    </tr>\n  </thead>\n  <tbody>\n    <tr>\n'
         '      <th>0</th>\n'
         '      <td>0.25</td>\n    </tr>\n  </tbody>\n</table>\n</div>')
MARKDOWN = ("# Results\n\nThe *frozen* model reaches **92 %** with `lr=0.01`; the loss is "
            "$\\mathcal{L} = -\\log p$ and"
            " [the docs](https://pytorch.org) say why.\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
            "```python\nprint('<b>not html</b>')\n```\n\n> a quote & a < b\n\n"
            "![plot](attachment:plot.png) [up](#Results)")
JS = "document.title='pwned'"

HTML_ATTACKS = {
    "script": f"<script>{JS}</script>",
    "img onerror": f'<img src="x" onerror="{JS}">',
    "handler in any case": f'<IMG SRC="x" OnErRoR="{JS}">',
    "svg onload": f'<svg onload="{JS}"></svg>',
    "svg foreignObject": f"<svg><foreignObject><body><script>{JS}</script></body></foreignObject></svg>",
    "javascript: link": '<a href="javascript:alert(1)">x</a>',
    "entity-obfuscated javascript: link": '<a href="jav&#x61;script&#58;alert(1)">x</a>',
    "tab in the scheme": '<a href="java\tscript:alert(1)">x</a>',
    "data: link": '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    "iframe srcdoc": f'<iframe srcdoc="<script>{JS}</script>"></iframe>',
    "object": '<object data="data:text/html,<script>alert(1)</script>"></object>',
    "embed": '<embed src="data:image/svg+xml,<svg onload=alert(1)>">',
    "meta refresh": '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    "base href": '<base href="http://attacker.example/">',
    "form": '<form action="javascript:alert(1)"><button>go</button></form>',
    "style element": ("<style>.score { display: none } body { background: url(http://attacker.example/) }"
                      "</style>"),
    "style expression": '<div style="width: expression(alert(1)); color: red">x</div>',
    "style url": '<div style="background-image: url(http://attacker.example/)">x</div>',
    "fixed overlay": '<div style="position: fixed; top: 0; z-index: 9999">Full credit</div>',
    "details ontoggle": f'<details open ontoggle="{JS}">x</details>',
    "mXSS through math": (f'<math><mtext><table><mglyph><style><img src=x onerror="{JS}">'
                          "</style></mglyph></table></mtext></math>"),
    "noscript confusion": f'<noscript><p title="</noscript><img src=x onerror={JS}>">',
    "dom clobbering id": '<form id="base_url"></form><a id="submission_id" name="x">x</a>',
    "remote image": '<img src="http://attacker.example/pixel.png">',
    "relative image": '<img src="/hub/logout">',
}
ACTIVE_TAGS = {"script", "iframe", "object", "embed", "meta", "base", "link", "form", "style", "svg", "math",
               "foreignobject", "frame", "frameset", "applet", "input", "button", "textarea", "noscript",
               "template"}


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def problems(fragment):
    """What in an HTML fragment could run script, load from elsewhere, or reach into the page (empty:
    inert)."""
    parser = _Tags()
    parser.feed(fragment)
    found = []
    for tag, attrs in parser.tags:
        if tag in ACTIVE_TAGS:
            found.append(f"<{tag}>")
        for name, value in attrs.items():
            value = (value or "").strip().lower()
            if name.startswith("on") or name in ("id", "name", "srcdoc", "formaction", "action"):
                found.append(f"{name}=")
            elif name == "class" and value != "dataframe":  # the page's own classes could restyle it
                found.append(f"class={value}")
            elif name == "style" and ("url(" in value or "expression" in value or "position" in value):
                found.append(f"style={value}")
            elif name == "src" and not value.startswith(("data:image/png;base64,",
                                                         "data:image/jpeg;base64,")):
                found.append(f"src={value}")
            elif name == "href" and not value.startswith(("http://", "https://", "mailto:", "#")):
                found.append(f"href={value}")
    return found


def notebook(*cells):
    return new_notebook(cells=list(cells), metadata={"kernelspec": {"name": "python3",
                                                                    "display_name": "Python 3",
                                                                    "language": "python"},
                                                     "language_info": {"name": "python"}})


def displayed(data, metadata=None, kind="display_data"):
    """A code cell with one output of mimebundle ``data``."""
    extra = {"execution_count": 1} if kind == "execute_result" else {}
    output = new_output(kind, data, metadata=metadata or {}, **extra)
    return new_code_cell("show()", outputs=[output], execution_count=1 if extra else None)


def honest_notebook():
    md = new_markdown_cell(MARKDOWN)
    md.attachments = {"plot.png": {"image/png": PNG}}
    graded = new_code_cell("assert True", metadata={"deletable": False, "editable": False, "nbgrader": {
        "cell_type": "code", "checksum": "a277fbb3", "grade": True, "grade_id": "count_params_visible",
        "locked": True, "points": 1, "schema_version": 3, "solution": False, "task": False}})
    plot = new_code_cell("plt.plot([1, 2])", execution_count=2, outputs=[
        new_output("execute_result", {"text/plain": "[<matplotlib.lines.Line2D at 0x7f>]"},
                   execution_count=2),
        new_output("display_data", {"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"},
                   metadata={"image/png": {"width": 320, "height": 240}}),
        new_output("stream", name="stdout", text="epoch 1: loss 0.25 <- lower is better & fine\n"),
        new_output("error", ename="AssertionError", evalue="<b>", traceback=["AssertionError: <script>"])])
    photo = displayed({"image/jpeg": JPEG, "text/plain": "<IPython.core.display.Image object>"})
    latex = displayed({"text/latex": "$x^2$", "text/plain": "x**2"}, kind="execute_result")
    return notebook(md, graded, plot, photo, latex)


def test_an_honest_notebook_comes_through_unchanged():
    """Plain text, PNG and JPEG figures, LaTeX, ordinary Markdown and grading metadata are kept as they are,
    with no notes; an HTML table (pandas' DataFrame HTML) keeps every tag and attribute (its style is
    rewritten without spaces, the same style)."""
    nb = honest_notebook()
    before = copy.deepcopy(nb)
    assert sanitise_notebook(nb) == []
    assert nb == before
    table = displayed({"text/html": TABLE, "text/plain": "   loss\n0  0.25"}, kind="execute_result")
    nb = notebook(table)
    assert sanitise_notebook(nb) == []
    assert nb.cells[0].outputs[0].data["text/html"] == TABLE.replace("text-align: right;", "text-align:right")


def test_pandas_style_block_goes_and_its_table_stays():
    """pandas puts a ``<style>`` before its table; a submission's CSS would apply to the whole page (hide
    scores, load from elsewhere), so it goes, noted. In nbconvert's classic CSS the cells align the same
    without it."""
    style = ("<style scoped>\n    .dataframe tbody tr th:only-of-type {\n"
             "        vertical-align: middle;\n    }\n\n"
             "    .dataframe tbody tr th {\n        vertical-align: top;\n    }\n\n"
             "    .dataframe thead th {\n        text-align: right;\n    }\n</style>\n")
    nb = notebook(displayed({"text/html": TABLE.replace("<div>\n", "<div>\n" + style)}))
    assert sanitise_notebook(nb) == ["cell 0: removed <style>, scoped= from text/html output"]
    kept = nb.cells[0].outputs[0].data["text/html"]
    assert kept.replace("\n\n", "\n") == TABLE.replace("text-align: right;", "text-align:right")


@pytest.mark.parametrize("assignment", sorted(p.name for p in (ROOT / "release").iterdir() if p.is_dir()))
def test_the_course_release_notebooks_come_through_unchanged(assignment):
    """What students start from (its Markdown, nbgrader metadata, kernelspec) is not touched."""
    nb = nbformat.read(ROOT / "release" / assignment / f"{assignment}.ipynb", as_version=4)
    before = copy.deepcopy(nb)
    assert sanitise_notebook(nb) == []
    assert nb == before


@pytest.mark.parametrize("attack", HTML_ATTACKS, ids=list(HTML_ATTACKS))
@pytest.mark.parametrize("mimetype", ["text/html", "text/markdown"])
def test_html_in_outputs_is_made_inert(attack, mimetype):
    """HTML (and Markdown, which may hold HTML) displayed by a cell keeps its text and loses what is
    active."""
    nb = notebook(displayed({mimetype: f"<p>before</p>{HTML_ATTACKS[attack]}<p>after</p>",
                             "text/plain": "x"}))
    notes = sanitise_notebook(nb)
    value = nb.cells[0].outputs[0].data[mimetype]
    rendered = markdown2html_mistune(value) if mimetype == "text/markdown" else value
    assert problems(rendered) == [], rendered
    assert "before" in rendered and "after" in rendered
    assert notes and all(note.startswith("cell 0: ") for note in notes)


@pytest.mark.parametrize("mimetype", ["application/javascript", "text/javascript", "application/x-javascript",
                                      "application/vnd.jupyter.widget-view+json", "image/svg+xml",
                                      "application/vnd.jupyter.widget-state+json", "text/vnd.mermaid",
                                      "application/pdf", "text/html+javascript"])
def test_outputs_of_other_mimetypes_are_removed(mimetype):
    """Script mimetypes, widget views, SVG (which can carry script) and anything else not on the list go; the
    text/plain beside them stays."""
    value = {"model_id": "abc", "version_major": 2} if "json" in mimetype else f"<svg onload=\"{JS}\"/>{JS}"
    nb = notebook(displayed({mimetype: value, "text/plain": "shown instead"}))
    assert sanitise_notebook(nb) == [f"cell 0: {mimetype} output removed"]
    assert dict(nb.cells[0].outputs[0].data) == {"text/plain": "shown instead"}


@pytest.mark.parametrize("mimetype", ["image/png", "image/jpeg"])
def test_image_data_that_is_not_base64_is_removed(mimetype):
    """nbconvert writes image data into ``<img src="data:...,DATA">``: only plain base64 may be there."""
    nb = notebook(displayed({mimetype: f'AAAA" onerror="{JS}', "text/plain": "img"}),
                  displayed({mimetype: PNG, "text/plain": "img"}))
    assert sanitise_notebook(nb) == [f"cell 0: {mimetype} output removed"]
    assert mimetype not in nb.cells[0].outputs[0].data
    assert nb.cells[1].outputs[0].data[mimetype] == PNG


def test_output_metadata_keeps_only_image_sizes():
    """``isolated`` (an iframe of the HTML), ``filenames`` (an ``src``) and everything else templates read go;
    numeric width and height of a kept image stay."""
    meta = {"text/html": {"isolated": True}, "filenames": {"image/png": "/hub/logout"},
            "image/png": {"width": 100, "height": "1 onerror=alert(1)", "unconfined": True},
            "needs_background": "x"}
    nb = notebook(displayed({"image/png": PNG, "text/html": "<b>x</b>"}, meta))
    assert sanitise_notebook(nb) == []
    assert nb.cells[0].outputs[0].metadata == {"image/png": {"width": 100}}


MARKDOWN_ATTACKS = {
    "img onerror": f'Hello <img src=x onerror="{JS}"> world',
    "script block": f"Hello world\n\n<script>{JS}</script>",
    "inline svg": f'Hello <svg onload="{JS}"></svg> world',
    "iframe srcdoc": f'Hello world\n\n<iframe srcdoc="<script>{JS}</script>"></iframe>',
    "mermaid block (copied unescaped)": f'Hello world\n\n```mermaid\n<img src=x onerror="{JS}">\n```',
    "javascript: link": "Hello [world](javascript:alert(1))",
    "entity-obfuscated link": "Hello [world](jav&#x61;script:alert(1))",
    "data: link": "Hello [world](data:text/html;base64,PHNjcmlwdD4=)",
    "autolink": "Hello <javascript:alert(1)> world",
    "image from elsewhere": "Hello ![world](http://attacker.example/pixel.png)",
    "attachment that is not there": "Hello ![world](attachment:missing.png)",
    "meta refresh": 'Hello world\n\n<meta http-equiv="refresh" content="0;url=http://attacker.example/">',
    "details ontoggle": f"Hello world\n\n<details open ontoggle=\"{JS}\">x</details>",
}


@pytest.mark.parametrize("attack", MARKDOWN_ATTACKS, ids=list(MARKDOWN_ATTACKS))
def test_markdown_cells_with_raw_html_are_made_inert(attack):
    """A Markdown cell the student wrote renders (as nbconvert renders it) with its text and nothing
    active."""
    nb = notebook(new_markdown_cell(MARKDOWN_ATTACKS[attack]))
    notes = sanitise_notebook(nb)
    rendered = markdown2html_mistune(nb.cells[0].source)
    assert problems(rendered) == [], rendered
    assert "Hello" in rendered and "world" in html.unescape(rendered)
    assert notes and notes[0].startswith("cell 0: removed ")


def test_markdown_rewritten_once_stays_the_same():
    """Sanitising again changes nothing and notes nothing (the rewritten Markdown is already inert)."""
    nb = notebook(*[new_markdown_cell(src) for src in MARKDOWN_ATTACKS.values()],
                  displayed({"text/html": "".join(HTML_ATTACKS.values())}))
    sanitise_notebook(nb)
    once = copy.deepcopy(nb)
    assert sanitise_notebook(nb) == []
    assert nb == once


def test_attachments_keep_only_png_and_jpeg_in_base64():
    cell = new_markdown_cell("![a](attachment:a.png) ![b](attachment:b.svg) ![c](attachment:c.png)")
    cell.attachments = {"a.png": {"image/png": PNG},
                        "b.svg": {"image/svg+xml": "PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+"},
                        "c.png": {"image/png": 'x" onerror="alert(1)'}}
    nb = notebook(cell)
    notes = sanitise_notebook(nb)
    assert dict(nb.cells[0].attachments) == {"a.png": {"image/png": PNG}}
    assert "cell 0: attachment 'b.svg' removed (only png and jpeg are kept)" in notes
    assert "cell 0: attachment 'c.png' removed (only png and jpeg are kept)" in notes
    rendered = markdown2html_mistune(nb.cells[0].source)
    assert problems(rendered) == [] and f"data:image/png;base64,{PNG}" in rendered


@pytest.mark.parametrize("mimetype", ["", "text/html", "TEXT/HTML"])
def test_raw_cells_that_reach_html_are_sanitised(mimetype):
    nb = notebook(new_raw_cell(f"<b>raw</b><script>{JS}</script><img src=x onerror=\"{JS}\">",
                               metadata={"raw_mimetype": mimetype} if mimetype else {}))
    assert sanitise_notebook(nb) == ["cell 0: removed <script>, onerror=, src= from a raw cell"]
    assert nb.cells[0].source == "<b>raw</b><img>"


def test_raw_cells_for_other_formats_are_kept():
    """nbconvert's HTML leaves out raw cells of other formats: LaTeX stays as it is."""
    nb = notebook(new_raw_cell("\\section{a < b}", metadata={"raw_mimetype": "text/latex"}))
    assert sanitise_notebook(nb) == [] and nb.cells[0].source == "\\section{a < b}"


@pytest.mark.parametrize("nbgrader", [
    {"grade_id": f'x" autofocus onfocus="{JS}', "solution": True, "grade": False},
    {"grade_id": "ok", "solution": "<script>", "grade": True},
    {"grade_id": "ok", "cell_type": "<img src=x onerror=alert(1)>"},
    "not a dict",
])
def test_nbgrader_metadata_that_is_not_nbgraders_is_removed(nbgrader):
    """The formgrader writes grade_id into HTML attributes unescaped: a grade_id that is not plain drops the
    cell's nbgrader metadata (it is shown as an ordinary cell)."""
    nb = notebook(new_code_cell("x", metadata={"nbgrader": nbgrader}))
    assert sanitise_notebook(nb) == ["cell 0: nbgrader metadata removed (not nbgrader's format, "
                                     "or a grade_id that is not plain)"]
    assert "nbgrader" not in nb.cells[0].metadata


def test_metadata_keeps_what_grading_and_display_need():
    meta = {"nbgrader": {"grade_id": "q1", "grade": True, "points": 2, "comment": "<script>", "score": 99},
            "tags": ["a", "b"], "editable": False, "alt": f'" onerror="{JS}',
            "jupyter": {"source_hidden": True}, "custom": {"html": "<script>"}}
    nb = notebook(new_code_cell("x", metadata=meta))
    nb.cells[0].execution_count = "<script>"  # the template writes it unescaped
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.metadata["title"] = "<script>"
    assert sanitise_notebook(nb) == ["notebook: widget state removed"]
    assert nb.cells[0].metadata == {"nbgrader": {"grade_id": "q1", "grade": True, "points": 2},
                                    "tags": ["a", "b"], "editable": False, "jupyter": {"source_hidden": True}}
    assert nb.cells[0].execution_count is None
    assert set(nb.metadata) == {"kernelspec", "language_info"}


def test_course_metadata_is_kept_only_as_plain_names():
    """A given cell's ``course`` metadata (notebook -> function names) stays; anything else under that key
    goes."""
    plain = {"given": {"02_freezing": ["freeze_to"]}}
    for meta, kept in [(plain, plain), ({"given": {"02_freezing": [{"html": "<script>"}]}}, None),
                       ({"given": plain["given"], "html": "<b>"}, None), ({"loads": "<script>"}, None)]:
        nb = notebook(new_code_cell("x", metadata={"course": meta}))
        sanitise_notebook(nb)
        assert nb.cells[0].metadata.get("course") == kept, meta


def test_the_report_lists_what_was_removed(tmp_path):
    from autograder.grade import report
    from autograder.grade.result import Result

    results = [Result("mallory", "01_layers", "graded", scores={"q": [1, 1]},
                      removed=["cell 3: removed <script> from text/html output"]),
               Result("alice", "01_layers", "graded", scores={"q": [1, 1]})]
    text = report.write(tmp_path, "01_layers", results, {"q": 1}, 1.0, 1)
    section = text.split("## Active content removed from submissions", 1)[1]
    assert ("- **mallory**: cell 3: removed <script> from text/html output" in section
            and "alice" not in section)
    clean = report.write(tmp_path, "01_layers", results[1:], {"q": 1}, 1.0, 1)
    assert (clean.split("## Active content removed from submissions", 1)[1].split("##")[0].strip()
            == "Nothing.")


# --- end to end: the class grader, then the pages an instructor and a student open, in a real browser ---

ASSIGNMENT = "01_layers"
STUDENT = "mallory"
CHROMIUM = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
# Payloads that run, unsanitised, in both pages (both templates extend nbconvert's classic one).
FIRE_UNSANITISED = {"html-script", "html-onerror", "html-srcdoc", "isolated", "markdown-output",
                    "markdown-cell", "mermaid"}
WAIT_MS = 3000


def attack_cells(js):
    """Cells a student adds after the last exercise: each displays script a different way. ``js(vector)`` is
    the payload (single quotes only) that reports ``vector`` if it ever runs."""
    def show(kind, value, extra=""):
        return new_code_cell("from IPython.display import HTML, Javascript, SVG, Markdown, display\n"
                             f"display({kind}({value!r}){extra})")

    srcdoc = html.escape(f"<script>{js('html-srcdoc')}</script>")
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" onload="{js("svg")}">'
           f'<script>{js("svg-script")}</script></svg>')
    bad_png = {"image/png": f'AAAA" onerror="{js("png")}', "text/plain": "png"}
    return [
        show("HTML", f"<script>{js('html-script')}</script>"),
        show("HTML", f'<img src=x onerror="{js("html-onerror")}">'),
        show("HTML", f'<iframe srcdoc="{srcdoc}"></iframe>'),
        show("Javascript", js("javascript")),
        show("SVG", svg),
        show("Markdown", f'Shown <img src=x onerror="{js("markdown-output")}">'),
        show("dict", bad_png, ", raw=True"),
        show("HTML", f"<script>{js('isolated')}</script>", ", metadata={'text/html': {'isolated': True}}"),
        new_markdown_cell(f'My notes <img src=x onerror="{js("markdown-cell")}">'),
        new_markdown_cell(f'```mermaid\n<img src=x onerror="{js("mermaid")}">\n```'),
        new_raw_cell(f"<script>{js('raw')}</script>", metadata={"raw_mimetype": "text/html"}),
        # Honest content, which must still show.
        new_markdown_cell("## My results\n\nThe *frozen* model reaches **92 %**."),
        show("HTML", TABLE),
        # The grader's kernels draw with Agg (no inline figures): the student shows the PNG themselves.
        new_code_cell("import io\nimport matplotlib.pyplot as plt\n"
                      "from IPython.display import Image, display\n"
                      "fig, ax = plt.subplots()\nax.plot([1, 2, 3])\nbuf = io.BytesIO()\n"
                      "fig.savefig(buf, format='png')\ndisplay(Image(buf.getvalue()))"),
    ]


class PageServer(http.server.ThreadingHTTPServer):
    """Loopback HTTP server: serves the pages under test (``pages``: {path: html}) and the formgrader's own
    static files (jQuery and its scripts, as the real formgrader serves them), and records each request to
    ``/beacon/<vector>`` in ``hits``."""

    def __init__(self, port=0):
        import nbgrader

        self.pages, self.hits = {}, []
        self.static = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "static"
        super().__init__(("127.0.0.1", port), _PageHandler)
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path, server = self.path.split("?")[0], self.server
        body, kind = None, "text/html; charset=utf-8"
        if path.startswith("/beacon/"):
            server.hits.append(path[len("/beacon/"):])
            body, kind = b"", "text/plain"
        elif path in server.pages:
            body = server.pages[path].encode()
        elif path.startswith("/formgrader/static/"):
            file = (server.static / path[len("/formgrader/static/"):]).resolve()
            if file.is_file() and file.is_relative_to(server.static):
                body, kind = file.read_bytes(), ("text/css" if file.suffix == ".css"
                                                 else "application/javascript")
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


def formgrade_html(course, student):
    """The autograded notebook as nbgrader's formgrader shows it (``SubmissionHandler.get``): nbconvert's
    HTMLExporter with the template ``formgrade`` from nbgrader's formgrader templates, and the same
    resources."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    path = Path(course) / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    resources = {"assignment_id": ASSIGNMENT, "notebook_id": ASSIGNMENT, "submission_id": "1", "index": 0,
                 "total": 1, "base_url": "", "student": student, "last_name": "", "first_name": "",
                 "notebook_path": f"/autograded/{student}/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"}
    return HTMLExporter(config=config).from_filename(str(path), resources=resources)[0]


def feedback_html(course, student):
    return (Path(course) / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()


def what_ran(browser, server, name):
    """Open page ``name`` and report which payloads ran within WAIT_MS: by a request to the server, by the
    global ``pwned``, or by the page title. Requests anywhere but the server are refused (no CDN)."""
    page = browser.new_page()
    page.route("**/*", lambda route: (route.continue_() if route.request.url.startswith(server.base)
                                      else route.abort()))
    server.hits.clear()
    try:
        page.goto(server.base + name, wait_until="load", timeout=60_000)
        page.wait_for_timeout(WAIT_MS)
        ran = set(server.hits) | set(page.evaluate("() => window.pwned || []"))
        title = page.title()
        if title.startswith("pwned"):
            ran.add(title.split(" ", 1)[-1])
        visible = {"table": page.locator("table:has-text('0.25')").count(),
                   "png": page.locator("img[src^='data:image/png;base64,']").count(),
                   "markdown": page.locator("strong:has-text('92 %')").count()}
        return ran, visible
    finally:
        page.close()


@pytest.mark.slow
def test_no_script_from_a_submission_runs_in_the_formgrader_or_the_feedback(tmp_path, record_timing):
    """A submission displaying script in every way above earns full marks, and neither the autograded notebook
    as the formgrader renders it nor its feedback runs any of it, while the honest table, figure and Markdown
    still show. Control: the same submission graded by plain nbgrader, rendered the same way, runs them."""
    from playwright.sync_api import sync_playwright

    from autograder.publish.layout import nbgrader
    from tests.support.grading import Case, autograde, build_submission, new_course, read_scores

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium package or set COURSE_CHROMIUM")
    server = PageServer()
    try:
        def js(vector):
            return (f"fetch('{server.base}/beacon/{vector}',{{mode:'no-cors'}});"
                    f"(top.pwned=top.pwned||[]).push('{vector}');top.document.title='pwned {vector}'")

        nb = build_submission(Case(STUDENT, "the reference solution, then script displayed every way"),
                              ASSIGNMENT)
        nb.cells += attack_cells(js)
        courses = {}
        for kind in ("sanitised", "control"):
            courses[kind] = new_course(tmp_path / kind, ASSIGNMENT)
            folder = courses[kind] / "submitted" / STUDENT / ASSIGNMENT
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / f"{ASSIGNMENT}.ipynb")

        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "autograder.grade", ASSIGNMENT, "--course",
                               str(courses["sanitised"]), "--workers", "1", "--no-export"],
                              capture_output=True, text=True, cwd=ROOT)
        record_timing("class grader, one submission displaying script", time.perf_counter() - start)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        scores = read_scores(courses["sanitised"], ASSIGNMENT, [STUDENT])[STUDENT]
        assert sum(s for s, _, _ in scores.values()) == sum(m for _, m, _ in scores.values()) == 10, scores
        result = json.loads((courses["sanitised"] / "reports" / ASSIGNMENT / "results.json").read_text())[0]
        removed = "; ".join(result["removed"])
        for expected in ("application/javascript output removed", "image/svg+xml output removed",
                         "image/png output removed", "<script>", "onerror="):
            assert expected in removed, removed
        report = (courses["sanitised"] / "reports" / ASSIGNMENT / "report.md").read_text()
        assert f"## Active content removed from submissions\n\n- **{STUDENT}**: cell " in report

        start = time.perf_counter()
        autograde(courses["control"], ASSIGNMENT)  # plain nbgrader, no sanitiser
        nbgrader(["generate_feedback", ASSIGNMENT, "--force"], cwd=courses["control"])
        record_timing("plain nbgrader autograde + feedback (the control)", time.perf_counter() - start)

        for kind, course in courses.items():
            server.pages[f"/formgrade-{kind}.html"] = formgrade_html(course, STUDENT)
            server.pages[f"/feedback-{kind}.html"] = feedback_html(course, STUDENT)

        start = time.perf_counter()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            try:
                seen = {name[1:-len(".html")]: what_ran(browser, server, name) for name in server.pages}
            finally:
                browser.close()
        record_timing("Chromium: formgrader and feedback pages, sanitised and control",
                      time.perf_counter() - start)
    finally:
        server.shutdown()
    for page in ("formgrade", "feedback"):
        ran, visible = seen[f"{page}-sanitised"]
        assert ran == set(), f"{page}: script from the submission ran: {sorted(ran)}"
        assert all(visible.values()), f"{page}: honest content missing after sanitising: {visible}"
        control, _ = seen[f"{page}-control"]
        assert FIRE_UNSANITISED <= control, (f"{page} control: {sorted(FIRE_UNSANITISED - control)} "
                                             "did not run")
    assert "javascript" in seen["formgrade-control"][0], ("the formgrader loads jQuery: "
                                                          "Javascript outputs run there")
