"""Self-check (course/selfcheck.py): a student runs the visible tests of their notebook, from a terminal or
from inside the notebook, and sees per exercise what passed, the test's own message otherwise, and the points
at stake; nothing of the hidden tests shows, and the output says that hidden tests decide the grade.
course/cells.py decides which cells are test cells, for the self-check and the grader alike."""
import json
import os
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from autograder.publish.layout import ROOT
from course import selfcheck
from course.cells import is_given_cell, is_solution_cell, is_test_cell
from tests.fixtures.submissions.a01_layers import COUNT_IGNORES_TRAINABLE_ONLY
from tests.support.grading import Case, build_submission

ASSIGNMENT = "01_layers"
WRONG = Case("ignores_flag", "count_params ignores trainable_only",
             replace={"count_params_solution": COUNT_IGNORES_TRAINABLE_ONLY})


def _hidden_test_lines(assignment):
    """Lines of the hidden tests in the instructor's notebook (long enough to be distinctive)."""
    nb = json.loads((ROOT / "source" / assignment / f"{assignment}.ipynb").read_text())
    lines = []
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if "### BEGIN HIDDEN TESTS" in text:
            hidden = text.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS", 1)[0]
            lines += [s.strip() for s in hidden.splitlines() if len(s.strip()) > 20]
    assert lines, f"{assignment} has no hidden tests to look for"
    return lines


def _write(tmp_path, case):
    path = tmp_path / f"{ASSIGNMENT}.ipynb"
    nbformat.write(build_submission(case, ASSIGNMENT), path)
    return path


def _cli(path):
    env = {k: v for k, v in os.environ.items() if k != "COURSE_FAST"}
    return subprocess.run([sys.executable, "-m", "course.selfcheck", str(path)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)


@pytest.mark.slow
def test_cli_passes_a_correct_notebook_and_reveals_no_hidden_test(tmp_path):
    """The reference answers pass every visible test (exit 0); the output names each test cell with its
    points, says hidden tests decide, and holds no line of the hidden tests."""
    run = _cli(_write(tmp_path, Case("solution", "reference")))
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    for grade_id, points in [("count_params_visible", "1 point"), ("params_reached_hidden", "3 points")]:
        line = next(line for line in out.splitlines() if grade_id in line)
        assert points in line and "passed" in line, line
    assert "Visible tests passed in 6 of 6 test cells, worth up to 10 of 10 points when graded." in out
    assert selfcheck.FOOTER in out
    leaked = [line for line in _hidden_test_lines(ASSIGNMENT) if line in out]
    assert not leaked, f"hidden tests shown to the student: {leaked}"


@pytest.mark.slow
def test_cli_reports_the_failing_test_message_for_that_exercise_only(tmp_path):
    """A wrong count_params fails its visible test with the test's own message (exit 1); the other exercises
    pass."""
    run = _cli(_write(tmp_path, WRONG))
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "count_params_visible" in line)
    assert "FAILED" in lines[at]
    assert "AssertionError: with the first layer frozen only 10 parameters are trainable" in lines[at + 1]
    for grade_id in ("grad_norms_visible", "grad_norms_hidden", "params_reached_visible",
                     "params_reached_hidden"):
        assert "passed" in next(line for line in lines if grade_id in line), grade_id


@pytest.mark.slow
def test_cli_on_the_blank_release_fails_everything():
    """The release as given fails all of its visible tests: nothing passes by accident."""
    run = _cli(ROOT / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    assert run.returncode == 1
    assert "Visible tests passed in 0 of 6 test cells" in run.stdout
    assert run.stdout.count("NotImplementedError") == 6


def test_cli_refuses_what_is_not_a_course_notebook(tmp_path):
    """A missing file, a non-notebook and a notebook without tests give a clear message, not a traceback."""
    junk = tmp_path / "junk.ipynb"
    junk.write_bytes(b"\x00\x01 not json")
    plain = tmp_path / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), plain)
    for path, says in [(tmp_path / "missing.ipynb", "not a notebook file"), (junk, "not a readable notebook"),
                       (plain, "has no graded test cells")]:
        run = _cli(path)
        assert run.returncode == 2 and says in run.stderr and "Traceback" not in run.stderr, run.stderr


def _run_inside(path, final_source, env=None):
    """Execute the notebook at ``path`` with one more cell at the end; returns that cell's printed text."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(final_source))
    NotebookClient(nb, timeout=180, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute(
        env=dict(os.environ, COURSE_FAST="1", **(env or {})))
    return "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")


@pytest.mark.slow
def test_check_inside_the_notebook_tests_what_the_kernel_defined_now(tmp_path):
    """`check()` in a last cell finds its notebook (from Jupyter's JPY_SESSION_NAME) and tests the kernel's
    own definitions: a wrong count_params fails, then the same kernel with it redefined correctly passes."""
    path = _write(tmp_path, WRONG)
    fixed = Case("solution", "reference")
    correct = next(c.source for c in build_submission(fixed, ASSIGNMENT).cells
                   if c.metadata.get("nbgrader", {}).get("grade_id") == "count_params_solution")
    final = ("from course.selfcheck import check\n"
             "first = check()\n"
             f"{correct}\n"
             "second = check()\n"
             "print('VERDICTS', [r.passed for r in first], [r.passed for r in second])\n")
    out = _run_inside(path, final, env={"JPY_SESSION_NAME": str(path)})
    assert f"Self-check of {path.name}" in out, out
    assert "VERDICTS [False, True, True, True, True, True] [True, True, True, True, True, True]" in out, out
    assert selfcheck.FOOTER in out


def test_check_outside_a_kernel_needs_a_namespace():
    """Called from plain Python without a namespace, check() says to use the command instead."""
    with pytest.raises(RuntimeError, match="python -m course.selfcheck"):
        selfcheck.check()


def test_report_groups_cells_by_exercise_and_marks_hidden_ones():
    """The report: one heading per exercise, '(more tests hidden)' on *_hidden cells, points summed."""
    nb = {"cells": [
        {"cell_type": "code", "source": "def f(): return 1",
         "metadata": {"nbgrader": {"solution": True, "grade_id": "f_solution"}}},
        {"cell_type": "code", "source": "assert f() == 1",
         "metadata": {"nbgrader": {"grade": True, "solution": False, "grade_id": "f_visible", "points": 1}}},
        {"cell_type": "code", "source": "assert f() == 2, 'f should give 2'",
         "metadata": {"nbgrader": {"grade": True, "solution": False, "grade_id": "f_hidden", "points": 2}}},
    ]}
    ns = {"f": lambda: 1}  # what the solution cell defines
    results = selfcheck.run_tests_here(nb, ns)
    assert [(r.exercise, r.passed, r.has_hidden_tests) for r in results] == [
        ("f", True, False), ("f", False, True)]
    text = selfcheck.report(results, "t")
    assert "\nf\n" in text and "(more tests hidden)" in text and "AssertionError: f should give 2" in text
    assert "worth up to 1 of 3 points" in text


def test_one_rule_says_which_cells_are_test_cells():
    """course.cells: a test cell is a graded code cell that is not a solution; the self-check uses it."""
    def cell(kind="code", **nbgrader):
        return {"cell_type": kind, "source": "", "metadata": {"nbgrader": nbgrader} if nbgrader else {}}

    test, manual_answer = cell(grade=True, solution=False), cell(grade=True, solution=True)
    answer, written = cell(solution=True, grade=False), cell("markdown", grade=True, solution=True)
    graded_markdown, plain = cell("markdown", grade=True, solution=False), cell()
    assert [is_test_cell(c) for c in (test, manual_answer, answer, written, graded_markdown, plain)] == [
        True, False, False, False, False, False]
    assert [is_solution_cell(c) for c in (test, manual_answer, answer, written, plain)] == [
        False, True, True, False, False]
    given_markdown = cell("markdown")
    assert [is_given_cell(c) for c in (test, manual_answer, answer, plain, given_markdown)] == [
        False, False, False, True, False]
    nb = {"cells": [answer, test, graded_markdown, manual_answer, plain, test]}
    assert [i for i, _, _ in selfcheck.graded_test_cells(nb)] == [1, 5]
