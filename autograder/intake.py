"""Check a submitted notebook before anything runs it, in the trusted parent; write a sanitised copy.

Plain nbgrader aborts the whole batch on a duplicated graded cell and crashes on files that are not
notebooks. Here every problem becomes either a fix that changes no student code (cell ids added to an
nbformat 4.4 notebook, a duplicated or split graded cell keeps its grading metadata on its first copy only)
or a rejection with a reason, and the other submissions are graded as usual.
"""
import json
import re
from pathlib import Path

import nbformat

MAX_BYTES = 50 * 1024 * 1024
STUDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")


class Rejected(Exception):
    """The submission cannot be graded; str(err) says why, in words for the instructor."""


def grade_ids(nb):
    return [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.cells]


def sanitise(path, expected_ids):
    """Read the notebook at ``path``; return (NotebookNode ready to grade, list of notes on what was fixed).

    expected_ids: the grade_ids of the assignment's cells (from the gradebook). Raises Rejected.
    """
    path = Path(path)
    if not path.exists():
        raise Rejected("no notebook submitted")
    size = path.stat().st_size
    if size == 0:
        raise Rejected("the notebook file is empty")
    if size > MAX_BYTES:
        raise Rejected(f"the notebook is {size / 2**20:.0f} MiB, over the {MAX_BYTES // 2**20} MiB limit")
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Rejected(f"not a notebook: the file is not valid JSON ({type(err).__name__}: {str(err)[:80]})") from None
    if not isinstance(raw, dict) or raw.get("nbformat") != 4 or not isinstance(raw.get("cells"), list):
        raise Rejected("not a notebook in format 4 (no 'nbformat': 4 and 'cells' list)")
    notes = []
    if any(isinstance(c, dict) and "id" not in c for c in raw["cells"]) or raw.get("nbformat_minor", 0) < 5:
        notes.append(f"nbformat 4.{raw.get('nbformat_minor', 0)}: cell ids added")
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4)
        nbformat.validator.normalize(nb)
        nb.nbformat_minor = max(nb.nbformat_minor, 5)
        for i, cell in enumerate(nb.cells):
            cell.setdefault("id", f"cell-{i}")
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001  (nbformat raises many kinds; all mean "not gradable")
        raise Rejected(f"not a valid notebook: {type(err).__name__}: {str(err)[:120]}") from None
    ids = [g for g in grade_ids(nb) if g]
    if not set(ids) & set(expected_ids):
        raise Rejected("none of this assignment's graded cells are in the notebook (a notebook of another assignment?)")
    seen = set()
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid and gid in seen:
            del cell.metadata["nbgrader"]
            notes.append(f"graded cell {gid!r} appears more than once (duplicated or split): its first copy is graded, the others run as ordinary cells")
        elif gid:
            seen.add(gid)
    return nb, notes


def valid_student_id(student):
    """A student id (a folder name under submitted/) that is safe to use in paths and in the gradebook."""
    return bool(STUDENT_RE.match(student))
