"""Grade fixture submissions with the real nbgrader, in a scratch course, and read scores from the gradebook.

A fixture submission is the released notebook with its solution cells filled in: by default with the
source's own solutions (markers removed), then with the replacements, edits and deletions a case names.
Tests then compare the gradebook's score of every graded cell with the case's expectation.
"""
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.publish.layout import ROOT, nbgrader, scratch_course

_MARKER = re.compile(r"^\s*### (BEGIN|END) (SOLUTION|HIDDEN TESTS)\s*$")


@dataclass
class Case:
    """One fixture submission and the scores an honest grader gives it.

    student: the student id (also the case's name in test reports).
    replace: {solution cell grade_id: source} put in place of the reference solution.
    edit: {locked cell grade_id: source}: the student edited a cell they should not have.
    delete: grade_ids of cells the student deleted.
    to_end: grade_ids of cells the student moved to the end of the notebook, in this order.
    all_tests: apply ``delete`` or ``to_end`` to every test cell of the assignment (``delete=ALL_TESTS``).
    blank: submit the release as it is (no solutions at all).
    expect: {grade cell grade_id: score}; every graded cell not named must earn full marks
        (with blank=True, every cell not named must earn 0).
    why: what the case stands for, shown when it fails.
    """

    student: str
    why: str
    replace: dict = field(default_factory=dict)
    edit: dict = field(default_factory=dict)
    delete: tuple = ()
    to_end: tuple = ()
    blank: bool = False
    expect: dict = field(default_factory=dict)

    def expected(self, max_scores):
        """{grade_id: expected score} for every grade cell, given {grade_id: max score}."""
        unknown = set(self.expect) - set(max_scores)
        if unknown:
            raise KeyError(f"{self.student}: no graded cells named {sorted(unknown)}")
        default = (lambda gid: 0.0) if self.blank else (lambda gid: max_scores[gid])
        return {gid: float(self.expect.get(gid, default(gid))) for gid in max_scores}


def wrong(student, why, cell, code, expect):
    """A realistic wrong answer to one exercise: solution cell ``cell`` replaced by ``code``."""
    return Case(student, why, replace={cell: code}, expect=expect)


ALL_TESTS = ("*tests*",)
"""``Case(delete=ALL_TESTS)`` or ``Case(to_end=ALL_TESTS)``: every autograder test cell of the assignment."""


def reference_cases():
    """The cases every assignment has: its own solution (full marks), the same with every test cell deleted
    (nbgrader puts them back from the gradebook: full marks) or moved to the end of the notebook (full marks),
    and the blank release (0)."""
    return [
        Case("solution", "the reference solution earns full marks"),
        Case("solution_tests_deleted", "an honest solution whose student deleted every test cell",
             delete=ALL_TESTS),
        Case("solution_tests_at_end", "an honest solution with every test cell moved to the end",
             to_end=ALL_TESTS),
        Case("blank", "the release as given earns 0 everywhere", blank=True),
    ]


def _is_test(cell):
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")


def strip_markers(source):
    """The source of a solution cell as a student would write it: the nbgrader marker lines removed."""
    return "\n".join(line for line in source.splitlines() if not _MARKER.match(line))


def _grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def exercise_of(grade_id, exercises):
    """The exercise a cell belongs to: the longest exercise name that ``grade_id`` starts with, then ``_``
    (``freeze_to_solution`` belongs to ``freeze_to``, not ``freeze``); None for a cell of no exercise."""
    names = [e for e in exercises if grade_id.startswith(e + "_")]
    return max(names, key=len) if names else None


def reach(assignment, exercises, root=ROOT):
    """{exercise: the exercises whose cells a wrong answer to it can change}: itself, and every exercise whose
    solution or test cells use a name its solution cell defines (notebook 03: ``discriminative_param_groups``
    calls ``even_mults``). Read from the source notebook, so that a new dependency is never missed."""
    source = nbformat.read(Path(root) / "source" / assignment / f"{assignment}.ipynb", as_version=4)
    cells = {_grade_id(c): c.source for c in source.cells if _grade_id(c)}
    owners = {gid: exercise_of(gid, exercises) for gid in cells}
    out = {}
    for ex in exercises:
        defined = re.findall(r"^(?:def|class) (\w+)", cells.get(f"{ex}_solution", ""), re.M)
        out[ex] = {ex} | {owners[gid] for gid, text in cells.items()
                          if owners[gid] and any(re.search(rf"\b{n}\b", text) for n in defined)}
    return out


def touched(case, reaches, exercises):
    """The exercises whose scores ``case`` can change: the reach of every exercise it replaces or expects a
    score in; contains None when one of those cells belongs to no exercise."""
    return set().union(*(reaches.get(exercise_of(gid, exercises), {None})
                         for gid in [*case.replace, *case.expect]))


def pack(cases, assignment, exercises, root=ROOT):
    """The cases as fewer submissions: wrong answers to different exercises share one submission.

    Grading a submission costs seconds whatever it holds, and a wrong answer changes the scores of its own
    exercise only (what each case's ``expect`` states), so wrong answers to exercises that cannot reach each
    other (``reach``) are graded together: the shared submission must earn exactly the union of its members'
    expectations, which checks every member as its own submission would. Correct variants (they answer every
    exercise), cases that edit, delete or move cells, and blank ones stay alone. Returns [(case, members)]: a
    shared case is named ``packed_<n>`` and its members are the cases it stands for; a case alone is its own
    only member.
    """
    reaches = reach(assignment, exercises, root)
    alone, touching = [], []
    for case in cases:
        shareable = case.replace and case.expect and not (case.edit or case.delete or case.to_end
                                                          or case.blank)
        cells = touched(case, reaches, exercises) if shareable else {None}
        if None in cells:  # not a plain wrong answer, or a cell of no exercise: never shared
            alone.append((case, [case]))
        else:
            touching.append((case, cells))
    # First fit, the items of the most answered exercises first: as few submissions as the busiest exercise
    # needs.
    load = {ex: sum(ex in cells for _, cells in touching) for ex in exercises}
    touching.sort(key=lambda pair: -max(load[ex] for ex in pair[1]))
    packs = []
    for item, cells in touching:
        for members, used in packs:
            if not used & cells:
                members.append(item)
                used |= cells
                break
        else:
            packs.append(([item], set(cells)))
    out = list(alone)
    for n, (members, _) in enumerate(packs, 1):
        if len(members) == 1:
            out.append((members[0], members))
            continue
        out.append((Case(f"packed_{n}", " | ".join(f"{m.student}: {m.why}" for m in members),
                         replace={k: v for m in members for k, v in m.replace.items()},
                         expect={k: v for m in members for k, v in m.expect.items()}), members))
    return out


def build_submission(case, assignment, root=ROOT):
    """Return the notebook (NotebookNode) that student ``case.student`` hands in."""
    release = nbformat.read(Path(root) / "release" / assignment / f"{assignment}.ipynb", as_version=4)
    if case.blank:
        return release
    source = nbformat.read(Path(root) / "source" / assignment / f"{assignment}.ipynb", as_version=4)
    solutions = {_grade_id(c): strip_markers(c.source) for c in source.cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    known = {_grade_id(c) for c in release.cells}
    tests = tuple(_grade_id(c) for c in release.cells if _is_test(c))
    delete = tests if case.delete == ALL_TESTS else case.delete
    to_end = tests if case.to_end == ALL_TESTS else case.to_end
    for gid in list(case.replace) + list(case.edit) + list(delete) + list(to_end):
        if gid not in known:
            raise KeyError(f"{case.student}: no cell with grade_id {gid!r} in {assignment}")
    cells, moved = [], {}
    for cell in release.cells:
        gid = _grade_id(cell)
        if gid in delete:
            continue
        if gid in case.replace:
            cell.source = case.replace[gid]
        elif gid in solutions:
            cell.source = solutions[gid]
        if gid in case.edit:
            cell.source = case.edit[gid]
        if gid in to_end:
            moved[gid] = cell
        else:
            cells.append(cell)
    release.cells = cells + [moved[gid] for gid in to_end]
    return release


def submit(course, assignment, case, root=ROOT):
    """Write the case's notebook to ``course/submitted/<student>/<assignment>/``."""
    folder = Path(course) / "submitted" / case.student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(build_submission(case, assignment, root), folder / f"{assignment}.ipynb")


def new_course(path, assignment, root=ROOT):
    """A scratch course at ``path`` with ``assignment`` generated, so its gradebook holds the graded cells."""
    course = scratch_course(path, root)
    nbgrader(["generate_assignment", assignment, "--force"], cwd=course)
    return course


def add_students(course, students):
    """Add students to the gradebook the nbgrader 0.9 way (``nbgrader db student import``; there is no
    ``CourseDirectory.db_students`` any more)."""
    roster = Path(course) / "students.csv"
    roster.write_text("id,first_name,last_name,email\n" + "".join(f"{s},,,\n" for s in students))
    nbgrader(["db", "student", "import", str(roster)], cwd=course)


def autograde(course, assignment, extra_args=(), env=None):
    """Run ``nbgrader autograde``; returns (seconds taken, nbgrader's combined output)."""
    start = time.perf_counter()
    proc = nbgrader(["autograde", assignment, "--force", *extra_args], cwd=course, env=env)
    return time.perf_counter() - start, proc.stdout + proc.stderr


def read_scores(course, assignment, students):
    """{student: {grade_id: (score, max_score, needs_manual_grade)}} from the course's gradebook.

    A student with no graded notebook in the gradebook maps to None.
    """
    from nbgrader.api import Gradebook, MissingEntry

    out = {}
    with Gradebook(f"sqlite:///{Path(course) / 'gradebook.db'}") as gb:
        for student in students:
            try:
                nb = gb.find_submission_notebook(assignment, assignment, student)
            except MissingEntry:
                out[student] = None
                continue
            out[student] = {g.name: (g.score, g.max_score, g.needs_manual_grade) for g in nb.grades}
    return out

