"""End to end: nbgrader autograde of fixture submissions in a scratch course, scores read from the gradebook.

For every assignment with a module in tests/fixtures/submissions/: the solution earns full marks and raises in
no cell (the instructor's notebook runs top to bottom in grading mode), the blank release earns 0, each
realistic wrong answer loses its own exercise's points and only those, correct variants earn full marks,
edited locked cells are graded by the original tests, deleted test cells are put back, and a warning on
stderr does not zero a test cell (with a control graded without the course's IgnorePattern).

Every case is graded by the class grader (``python -m autograder.grade``: sandboxed kernels, tests in the
judge), as an instructor grades a class, with wrong answers to unrelated exercises sharing one submission
(``tests.support.grading.pack``: each member's expectation still checked). Stock ``nbgrader autograde``
grades the solution and the warning case: the course's notebooks grade right without our grader too (the
blank release, which earns 0 whoever grades it, only by the class grader). Grading every case with both, one
per submission, made this the longest part of the suite for no extra check.
"""
import importlib
import json
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import nbformat
import pytest

import tests.fixtures.submissions
from autograder.publish.layout import ROOT, nbgrader, scratch_course
from tests.support.grading import (
    add_students,
    autograde,
    new_course,
    pack,
    reach,
    read_scores,
    submit,
    touched,
)

MODULES = {
    m.name: importlib.import_module(f"tests.fixtures.submissions.{m.name}")
    for m in pkgutil.iter_modules(tests.fixtures.submissions.__path__)
    if m.name.startswith("a")
}
CASES = [(name, case) for name, mod in sorted(MODULES.items()) for case in mod.CASES]
PACKED = {name: pack(mod.CASES, mod.ASSIGNMENT, mod.EXERCISES) for name, mod in sorted(MODULES.items())}
CLASS_CASES = [(name, case, members) for name, packs in PACKED.items() for case, members in packs]
HONEST = {"solution", "warns_on_stderr"}
PLAIN_CASES = [(name, case) for name, case in CASES if case.student in HONEST]
WITH_CONTROL = sorted(name for name, mod in MODULES.items() if hasattr(mod, "WARNING_CONTROL"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def graded(tmp_path_factory, record_timing):
    """graded(name) -> (scores, course): the honest cases of one assignment graded by one `nbgrader
    autograde` run.

    Stock nbgrader grades one notebook at a time on one core, so the first call grades every assignment, two
    at a time (one scratch course each); scores are {student: {grade_id: (score, max, needs_manual)}}.
    """
    done = {}

    def grade_one(name):
        mod = MODULES[name]
        cases = [case for case in mod.CASES if case.student in HONEST]
        course = new_course(tmp_path_factory.mktemp(name) / "course", mod.ASSIGNMENT)
        for case in cases:
            submit(course, mod.ASSIGNMENT, case)
        control = getattr(mod, "WARNING_CONTROL", None)
        add_students(course, [c.student for c in cases] + ([control.student] if control else []))
        seconds, _ = autograde(course, mod.ASSIGNMENT, ["--Autograde.create_student=False"])
        n = len(cases)
        record_timing(f"nbgrader autograde {mod.ASSIGNMENT}: {n} submissions, {seconds / n:.1f} s each "
                      "(two assignments at a time)", seconds)
        students = [c.student for c in cases]
        if control is not None:
            submit(course, mod.ASSIGNMENT, control)
            autograde(course, mod.ASSIGNMENT, ["--student", control.student, "--IgnorePattern.enabled=False",
                                               "--Autograde.create_student=False"])
            students.append(control.student)
        return read_scores(course, mod.ASSIGNMENT, students), course

    def grade(name):
        if not done:
            with ThreadPoolExecutor(max_workers=2) as pool:
                done.update(zip(MODULES, pool.map(grade_one, MODULES)))
        return done[name]

    return grade


@pytest.fixture(scope="session")
def class_graded(tmp_path_factory, record_timing):
    """class_graded(name) -> (scores, results): every fixture submission of every assignment graded by one
    class-grader run (``--all``, two workers), as an instructor grades a course; results are each report's
    results.json by student."""
    done = {}

    def grade(name):
        if done:
            return done[name]
        course = scratch_course(tmp_path_factory.mktemp("class") / "course")
        for key, mod in MODULES.items():
            nbgrader(["generate_assignment", mod.ASSIGNMENT, "--force"], cwd=course)
            for case, _ in PACKED[key]:
                submit(course, mod.ASSIGNMENT, case)
        seconds, proc = _timed([sys.executable, "-m", "autograder.grade", "--all", "--course", str(course),
                                "--workers", "2", "--no-feedback", "--no-export"])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        n = sum(len(packs) for packs in PACKED.values())
        record_timing(f"class grader --all: {n} submissions ({len(CASES)} cases) "
                      f"of {len(MODULES)} assignments, "
                      f"2 workers, {seconds / n:.1f} s each", seconds)
        for key, mod in MODULES.items():
            report = course / "reports" / mod.ASSIGNMENT / "results.json"
            results = {r["student"]: r for r in json.loads(report.read_text())}
            done[key] = read_scores(course, mod.ASSIGNMENT, [c.student for c, _ in PACKED[key]]), results
        return done[name]

    return grade


def _timed(cmd):
    import time

    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - start, proc


def _check(scores, case, exercises):
    got = scores[case.student]
    assert got is not None, f"{case.student} was not graded"
    cells = sorted(gid for ids in exercises.values() for gid in ids)
    assert sorted(got) == cells, f"{case.student}: graded cells {sorted(got)}, expected {cells}"
    max_scores = {gid: mx for gid, (_, mx, _) in got.items()}
    want = case.expected(max_scores)
    manual = sorted(gid for gid, (_, _, needs) in got.items() if needs)
    assert not manual, f"{case.student}: cells left needing a manual grade: {manual}"
    actual = {gid: score for gid, (score, _, _) in got.items()}
    assert actual == want, f"{case.student} ({case.why}):\n  expected {want}\n  got      {actual}"


@pytest.mark.parametrize("name,case", PLAIN_CASES, ids=[f"{n}-{c.student}" for n, c in PLAIN_CASES])
def test_stock_nbgrader_grades_honest_work(graded, name, case):
    """Stock nbgrader gives the solution full marks, and a warning on stderr costs nothing: the scores the
    class grader must give them too."""
    scores, _ = graded(name)
    _check(scores, case, MODULES[name].EXERCISES)


@pytest.mark.parametrize("name,case,members", CLASS_CASES,
                         ids=[f"{n}-{'+'.join(m.student for m in ms)}" for n, _, ms in CLASS_CASES])
def test_class_grader_fixture_scores(class_graded, name, case, members):
    """The class grader gives each fixture submission exactly the per-cell scores an honest grader would give,
    and nothing it watches for in honest or merely wrong work zeroes a test. Wrong answers to exercises that
    cannot reach each other share a submission (``tests.support.grading.pack``): the test id names every
    member."""
    scores, results = class_graded(name)
    result = results[case.student]
    assert result["status"] == "graded", f"{case.student}: {result['status']}: {result['reason']}"
    assert result["flags"] == [], f"{case.student}: the judge flagged {result['flags']}"
    _check(scores, case, MODULES[name].EXERCISES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_packing_grades_every_case_once_and_keeps_exercises_apart(name):
    """Every case is a member of exactly one class-grader submission, and the wrong answers sharing one touch
    exercises that cannot reach each other (notebook 03: even_mults reaches discriminative_param_groups)."""
    mod = MODULES[name]
    members = [m.student for _, ms in PACKED[name] for m in ms]
    assert sorted(members) == sorted(c.student for c in mod.CASES)
    reaches = reach(mod.ASSIGNMENT, mod.EXERCISES)
    for case, ms in PACKED[name]:
        sets = [touched(m, reaches, mod.EXERCISES) for m in ms]
        assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1:]), case.student
    if name == "a03_optimizer":
        assert reaches["even_mults"] == {"even_mults", "discriminative_param_groups"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_solution_runs_top_to_bottom_without_an_error(graded, name):
    """The instructor's solution, run by stock nbgrader on the CPU in grading mode (COURSE_FAST=1 from
    conftest), raises in no cell, given cells and demonstrations included (its tests passing is the full marks
    above), and shows at least one plot. This is what ``nbgrader validate`` on the source checks, in the same
    run."""
    _, course = graded(name)
    assignment = MODULES[name].ASSIGNMENT
    nb = nbformat.read(course / "autograded" / "solution" / assignment / f"{assignment}.ipynb", as_version=4)
    errors = [f"cell {i}: {out.ename}: {out.evalue}" for i, cell in enumerate(nb.cells)
              if cell.cell_type == "code" for out in cell.outputs if out.output_type == "error"]
    assert not errors, "\n".join(errors)
    figures = sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
                  for out in cell.outputs)
    assert figures >= 1, "every notebook shows at least one plot"


@pytest.mark.parametrize("name", WITH_CONTROL)
def test_warning_control_is_zeroed_without_ignore_pattern(graded, name):
    """Without IgnorePattern a warning on stderr zeroes the test cells: the course config is what prevents
    it."""
    scores, _ = graded(name)
    _check(scores, MODULES[name].WARNING_CONTROL, MODULES[name].EXERCISES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_exercise_points_add_up(graded, name):
    """Every graded cell belongs to one listed exercise, and the solution earns every point there is."""
    scores, _ = graded(name)
    got = scores["solution"]
    assert sorted(got) == sorted(gid for ids in MODULES[name].EXERCISES.values() for gid in ids)
    assert sum(mx for _, mx, _ in got.values()) == sum(score for score, _, _ in got.values()) > 0


@pytest.mark.parametrize("name", WITH_CONTROL)
def test_student_validate_agrees_with_grading(graded, name):
    """The student's Validate button passes the warning-printing submission, as autograde gives it full
    marks."""
    _, course = graded(name)
    assignment = MODULES[name].ASSIGNMENT
    path = course / "submitted" / "warns_on_stderr" / assignment / f"{assignment}.ipynb"
    proc = nbgrader(["validate", str(path)], cwd=course)
    assert "Success! Your notebook passes all the tests." in proc.stdout, proc.stdout + proc.stderr
