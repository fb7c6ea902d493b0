"""Check a submitted notebook before anything runs it, in the trusted parent; write a sanitised copy.

Every submission is hostile data. Its folder, notebook, ``timestamp.txt`` and ``submission_secret.txt`` are
opened without following symbolic links at any step below ``submitted/`` (``O_NOFOLLOW`` relative to the
folder above, so a link, even a swapped-in one, is never followed as the instructor), only as regular files
(never a FIFO, a device or a folder; opened non-blocking, so a FIFO cannot hang the grader), and read with a
size limit. The notebook's JSON is checked for nesting depth before it is parsed and for every field's type
after, then validated by nbformat. Any problem raises ``Rejected`` with a reason for the instructor, and the
other submissions are graded as usual.

Plain nbgrader aborts the whole batch on a duplicated graded cell and crashes on files that are not
notebooks. Here every problem becomes either a fix that changes no student code (cell ids added to an
nbformat 4.4 notebook, a duplicated or split graded cell keeps its grading metadata on its first copy only)
or a rejection with a reason.
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from nbformat import NotebookNode

MAX_BYTES = 50 * 1024 * 1024
MAX_SMALL_FILE = 4096  # timestamp.txt, submission_secret.txt
MAX_DEPTH = 64  # a notebook nests about 6 deep; widget state a few more
STUDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
CELL_TYPES = {"code", "markdown", "raw"}
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class Rejected(Exception):
    """The submission cannot be graded; str(err) says why, in words for the instructor."""


@dataclass
class Submission:
    """One folder ``submitted/<student>/<assignment>/``, found without following links.

    folder: its path (for messages and for nbgrader's own use after intake); rejected: why it cannot be graded
    before anything is read from it (None when it can be).
    """

    student: str
    folder: Path
    rejected: str = None


def valid_student_id(student: str) -> bool:
    """A student id (a folder name under submitted/) that is safe to use in paths and in the gradebook."""
    return bool(STUDENT_RE.match(student))


def shown_id(student: str) -> str:
    """A student id as the report may show it, whatever it holds (ASCII, at most 64 characters)."""
    return ascii(student)[1:-1][:64] if not valid_student_id(student) else student


def find_submissions(course: str | Path, assignment: str) -> dict[str, Submission]:
    """{student: Submission} for every entry of ``course/submitted/`` that holds (or should hold)
    ``assignment``.

    A student folder or assignment folder that is a symbolic link, or anything but a folder, is a rejected
    Submission; a student folder without this assignment is not listed (the student is "missing").
    """
    root = Path(course) / "submitted"
    out = {}
    if not root.is_dir():
        return out
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        student = entry.name
        if not valid_student_id(student):
            out[student] = Submission(student, Path(entry.path), "the folder name is not a valid student id")
            continue
        if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            out[student] = Submission(student, Path(entry.path),
                                      "submitted/<student> is not a folder (a link?)")
            continue
        try:
            info = os.lstat(Path(entry.path) / assignment)
        except FileNotFoundError:
            continue
        except OSError as err:
            out[student] = Submission(student, Path(entry.path), f"cannot read the folder: {err.strerror}")
            continue
        folder = Path(entry.path) / assignment
        if not stat.S_ISDIR(info.st_mode):
            out[student] = Submission(student, folder,
                                      f"submitted/{student}/{assignment} is not a folder (a link?)")
        else:
            out[student] = Submission(student, folder)
    return out


def read_file(folder: str | Path, name: str, limit: int, missing_ok: bool = False) -> bytes | None:
    """The bytes of regular file ``folder/name``, at most ``limit`` of them; None if absent and
    ``missing_ok``.

    Every component from ``folder``'s parent down is opened without following links. Raises Rejected for a
    link, a FIFO, a device, a folder, or a file over the limit.
    """
    folder = Path(folder)
    try:
        parent = os.open(folder.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise Rejected(f"cannot open {folder.parent.name}/: {err.strerror}") from None
    try:
        here = os.open(folder.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=parent)
    except OSError as err:
        raise Rejected(f"{folder.name}/ is not a folder ({err.strerror})") from None
    finally:
        os.close(parent)
    try:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        fd = os.open(name, flags, dir_fd=here)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise Rejected(f"no {name} submitted") from None
    except OSError as err:
        kind = "a symbolic link" if err.errno == errno.ELOOP else err.strerror
        raise Rejected(f"{name} cannot be read as a plain file: {kind}") from None
    finally:
        os.close(here)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Rejected(f"{name} is not a regular file (a folder, a pipe or a device)")
        if info.st_size > limit:
            raise Rejected(f"{name} is {_size(info.st_size)}, over the {_size(limit)} limit")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise Rejected(f"{name} grew past the {_size(limit)} limit while it was read")
        return data
    finally:
        os.close(fd)


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


def read_timestamp(folder: str | Path) -> str | None:
    """``timestamp.txt`` of a submission folder as text, None when there is none. Raises Rejected when it is
    not a plain file of at most 4 KiB holding a date nbgrader can read."""
    from nbgrader.utils import parse_utc

    data = read_file(folder, "timestamp.txt", MAX_SMALL_FILE, missing_ok=True)
    if data is None:
        return None
    try:
        text = data.decode("utf-8").strip()
        parse_utc(text)
    except Exception as err:  # noqa: BLE001  (dateutil raises several kinds)
        raise Rejected(f"timestamp.txt is not a date ({type(err).__name__})") from None
    return text


def read_secret(folder: str | Path) -> str | None:
    """``submission_secret.txt`` (written by ``nbgrader submit``; ``release_feedback`` names feedback files
    with it) as text, or None when absent or not a short token. Never raises for a bad one: it only names
    feedback."""
    try:
        data = read_file(folder, "submission_secret.txt", MAX_SMALL_FILE, missing_ok=True)
        text = data.decode("ascii").strip() if data is not None else None
    except (Rejected, UnicodeDecodeError):
        return None
    return text if text and SECRET_RE.match(text) else None


def json_depth(data: bytes, limit: int = MAX_DEPTH) -> int:
    """How deeply the JSON text ``data`` (bytes) nests arrays and objects, counted without parsing it; stops
    counting at ``limit + 1``. Strings are skipped, so brackets inside them do not count."""
    skeleton = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", data))
    deepest = 0
    for depth in accumulate(_DEPTH_STEP[c] for c in skeleton):
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def _check_types(raw: Any) -> None:
    """Raise Rejected unless ``raw`` has the shape of an nbformat 4 notebook in every field the grader
    reads."""

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise Rejected(f"not a valid notebook: {what}")

    need(isinstance(raw, dict), "the file does not hold a JSON object")
    need(raw.get("nbformat") == 4 and type(raw.get("nbformat")) is int, "'nbformat' is not 4")
    minor = raw.get("nbformat_minor", 0)
    need(type(minor) is int and 0 <= minor < 100, "'nbformat_minor' is not a small whole number")
    need(isinstance(raw.get("metadata", {}), dict), "'metadata' is not an object")
    need(isinstance(raw.get("cells"), list), "no 'cells' list")
    for i, cell in enumerate(raw["cells"]):
        need(isinstance(cell, dict), f"cell {i} is not an object")
        need(cell.get("cell_type") in CELL_TYPES, f"cell {i} has no known cell_type")
        source = cell.get("source", "")
        need(isinstance(source, str)
             or (isinstance(source, list) and all(isinstance(s, str) for s in source)),
             f"cell {i}'s source is not text")
        need(isinstance(cell.get("metadata", {}), dict), f"cell {i}'s metadata is not an object")
        meta = cell.get("metadata", {}).get("nbgrader", {})
        need(isinstance(meta, dict), f"cell {i}'s nbgrader metadata is not an object")
        need(isinstance(meta.get("grade_id", ""), str), f"cell {i}'s grade_id is not text")
        need("id" not in cell or isinstance(cell["id"], str), f"cell {i}'s id is not text")
        need(isinstance(cell.get("outputs", []), list), f"cell {i}'s outputs are not a list")


def grade_ids(nb: NotebookNode) -> list[str | None]:
    return [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.cells]


def sanitise(folder: str | Path, assignment: str, known_ids: Iterable[str]) -> tuple[NotebookNode, list[str]]:
    """Read ``folder/<assignment>.ipynb`` as hostile data; return (NotebookNode ready to grade, list of notes
    on what was fixed).

    known_ids: every grade_id of the assignment's nbgrader cells (graded or not), from the gradebook: a
    notebook holding none of them is another assignment's. Raises Rejected.
    """
    import nbformat

    data = read_file(folder, f"{assignment}.ipynb", MAX_BYTES)
    if not data.strip():
        raise Rejected("the notebook file is empty")
    if json_depth(data) > MAX_DEPTH:
        raise Rejected(f"not a notebook: its JSON nests more than {MAX_DEPTH} levels deep")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise Rejected("not a notebook: the file is not valid JSON "
                       f"({type(err).__name__}: {str(err)[:80]})") from None
    if not isinstance(raw, dict) or raw.get("nbformat") != 4 or not isinstance(raw.get("cells"), list):
        raise Rejected("not a notebook in format 4 (no 'nbformat': 4 and 'cells' list)")
    _check_types(raw)
    notes = []
    if any("id" not in c for c in raw["cells"]) or raw.get("nbformat_minor", 0) < 5:
        notes.append(f"nbformat 4.{raw.get('nbformat_minor', 0)}: cell ids added")
    try:
        nb = nbformat.from_dict(raw)
        nbformat.validator.normalize(nb)
        nb.nbformat_minor = max(nb.nbformat_minor, 5)
        for i, cell in enumerate(nb.cells):
            cell.setdefault("id", f"cell-{i}")
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001  (nbformat raises many kinds; all mean "not gradable")
        raise Rejected(f"not a valid notebook: {type(err).__name__}: {str(err)[:120]}") from None
    if not set(filter(None, grade_ids(nb))) & set(known_ids):
        raise Rejected("none of this assignment's nbgrader cells are in the notebook (a notebook of another "
                       "assignment?)")
    seen = set()
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid and gid in seen:
            del cell.metadata["nbgrader"]
            notes.append(f"graded cell {gid!r} appears more than once (duplicated or split): its first copy "
                         "is graded, the others run as ordinary cells")
        elif gid:
            seen.add(gid)
    return nb, notes
