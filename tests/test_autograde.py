"""End to end: nbgrader autograde of fixture submissions in a scratch course, scores read from the gradebook.

For every assignment with a module in tests/submissions/: the solution earns full marks, the blank release
earns 0, each realistic wrong answer loses its own exercise's points and only those, correct variants earn
full marks, edited locked cells are graded by the original tests, deleted test cells are put back, and a
warning on stderr does not zero a test cell (with a control graded without the course's IgnorePattern).
"""
import importlib
import pkgutil

import pytest

import tests.submissions
from autograder.course_dir import nbgrader
from tests.grading import add_students, autograde, new_course, read_scores, submit

MODULES = {
    m.name: importlib.import_module(f"tests.submissions.{m.name}")
    for m in pkgutil.iter_modules(tests.submissions.__path__)
    if m.name.startswith("a")
}
CASES = [(name, case) for name, mod in sorted(MODULES.items()) for case in mod.CASES]
WITH_CONTROL = sorted(name for name, mod in MODULES.items() if hasattr(mod, "WARNING_CONTROL"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def graded(tmp_path_factory, record_timing):
    """graded(name) -> (scores, course): every case of one assignment graded in one `nbgrader autograde` run.

    Graded once per assignment and session; scores are {student: {grade_id: (score, max, needs_manual)}}.
    """
    done = {}

    def grade(name):
        if name in done:
            return done[name]
        mod = MODULES[name]
        course = new_course(tmp_path_factory.mktemp(name) / "course", mod.ASSIGNMENT)
        for case in mod.CASES:
            submit(course, mod.ASSIGNMENT, case)
        control = getattr(mod, "WARNING_CONTROL", None)
        add_students(course, [c.student for c in mod.CASES] + ([control.student] if control else []))
        seconds, _ = autograde(course, mod.ASSIGNMENT, ["--Autograde.create_student=False"])
        n = len(mod.CASES)
        record_timing(f"nbgrader autograde {mod.ASSIGNMENT}: {n} submissions, {seconds / n:.1f} s each", seconds)
        students = [c.student for c in mod.CASES]
        if control is not None:
            submit(course, mod.ASSIGNMENT, control)
            autograde(course, mod.ASSIGNMENT, ["--student", control.student, "--IgnorePattern.enabled=False",
                                               "--Autograde.create_student=False"])
            students.append(control.student)
        done[name] = read_scores(course, mod.ASSIGNMENT, students), course
        return done[name]

    return grade


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


@pytest.mark.parametrize("name,case", CASES, ids=[f"{n}-{c.student}" for n, c in CASES])
def test_fixture_submission_scores(graded, name, case):
    """Each fixture submission gets exactly the per-cell scores an honest grader would give."""
    scores, _ = graded(name)
    _check(scores, case, MODULES[name].EXERCISES)


@pytest.mark.parametrize("name", WITH_CONTROL)
def test_warning_control_is_zeroed_without_ignore_pattern(graded, name):
    """Without IgnorePattern a warning on stderr zeroes the test cells: the course config is what prevents it."""
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
    """The student's Validate button passes the warning-printing submission, as autograde gives it full marks."""
    _, course = graded(name)
    assignment = MODULES[name].ASSIGNMENT
    path = course / "submitted" / "warns_on_stderr" / assignment / f"{assignment}.ipynb"
    proc = nbgrader(["validate", str(path)], cwd=course)
    assert "Success! Your notebook passes all the tests." in proc.stdout, proc.stdout + proc.stderr
