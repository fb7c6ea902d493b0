"""source/ and release/: the layout, stripped sources, a release in sync, and no solution in any release."""
import re

import nbformat
import pytest

from autograder.publish import release, strip
from autograder.publish.layout import ROOT, LayoutError, assignments

ASSIGNMENTS = assignments(ROOT)


def _nb(kind, name):
    return nbformat.read(ROOT / kind / name / f"{name}.ipynb", as_version=4)


def _graded(nb):
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]


def test_there_are_assignments():
    assert ASSIGNMENTS and ASSIGNMENTS[0] == "01_layers"


@pytest.mark.slow
def test_release_is_in_sync_with_source():
    """release/ is exactly what `make release` generates from source/ (a stale release fails CI)."""
    assert release.differences(ROOT) == [], "run `make release` and commit release/"


def test_source_notebooks_are_stripped():
    """Outputs and execution counts are stripped from source/ (`make strip`), nbgrader metadata kept."""
    assert strip.main(["--check", str(ROOT / "source")]) == 0


def test_layout_refuses_extra_files_in_an_assignment(tmp_path):
    """nbgrader would release any other file to students, so the layout check refuses it."""
    folder = tmp_path / "source" / "01_x"
    folder.mkdir(parents=True)
    (folder / "01_x.ipynb").write_text("{}")
    assert assignments(tmp_path) == ["01_x"]
    (folder / "helpers.py").write_text("SECRET = 1\n")
    with pytest.raises(LayoutError, match="helpers.py"):
        assignments(tmp_path)
    (folder / "helpers.py").unlink()
    (tmp_path / "source" / "Problem Set").mkdir()
    with pytest.raises(LayoutError, match="Problem Set"):
        assignments(tmp_path)


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_release_holds_no_solution_and_no_hidden_test(name):
    """No marker, no solution line and no hidden-test line of the source reaches the student's notebook."""
    text = (ROOT / "release" / name / f"{name}.ipynb").read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    released = "\n".join(c.source for c in _nb("release", name).cells)
    for cell in _nb("source", name).cells:
        for block in re.findall(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", cell.source,
                                flags=re.S):
            for line in block[1].splitlines():
                if len(line.strip()) > 25:  # short lines (`return out`) may legitimately appear elsewhere
                    assert line not in released, \
                        f"{name}: released notebook contains hidden line {line.strip()!r}"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_exercise_cells_follow_the_conventions(name):
    """Descriptive grade_ids; a docstring on every test cell; each exercise has a visible and a hidden test,
    and each hidden-test cell starts with a visible check, so that a blank notebook fails it too."""
    nb = _nb("source", name)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    solutions = [i for i in ids if i.endswith("_solution")]
    assert solutions, "no exercise found"
    for gid in ids:
        assert re.fullmatch(r"[a-z][a-z0-9_]+_(solution|visible|hidden)", gid), \
            f"grade_id {gid!r} is not descriptive"
    for sol in solutions:
        stem = sol[: -len("_solution")]
        assert f"{stem}_visible" in ids and f"{stem}_hidden" in ids, \
            f"{stem}: needs a visible and a hidden test cell"
    for cell in _graded(nb):
        gid = cell.metadata["nbgrader"]["grade_id"]
        assert cell.metadata["nbgrader"]["locked"], f"{gid}: test cells must be locked"
        assert re.match(r'^"""[^\n]+"""\n', cell.source), \
            f"{gid}: a test cell starts with a one-line docstring"
        if gid.endswith("_hidden"):
            before, _, _ = cell.source.partition("### BEGIN HIDDEN TESTS")
            assert "### BEGIN HIDDEN TESTS" in cell.source, f"{gid}: no hidden tests"
            assert "assert" in before.split('"""', 2)[2], \
                f"{gid}: needs a visible check before the hidden block"
