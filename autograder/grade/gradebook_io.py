"""The trusted parent's side of the gradebook: write workers' results in, and check it before exporting.

Only the parent process opens the real gradebook; workers grade in scratch copies and hand back results.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from nbgrader.api import Gradebook, MissingEntry

if TYPE_CHECKING:
    from autograder.grade.result import Result


class ExportRefused(Exception):
    """The gradebook holds scores no honest grading could give; str(err) lists them."""


def db_url(course: str | Path) -> str:
    return f"sqlite:///{Path(course) / 'gradebook.db'}"


def graded_cells(course: str | Path, assignment: str) -> dict[str, tuple[float, bool]]:
    """{grade_id: (max_score, is_test)} for every graded cell of the assignment. Raises MissingEntry if it is
    not in the gradebook."""
    out = {}
    with Gradebook(db_url(course)) as gb:
        nb = gb.find_notebook(assignment, assignment)
        for cell in nb.grade_cells:
            try:
                gb.find_solution_cell(cell.name, assignment, assignment)
                is_test = False
            except MissingEntry:
                is_test = cell.cell_type == "code"
            out[cell.name] = (cell.max_score, is_test)
    return out


def cell_ids(course: str | Path, assignment: str) -> list[str]:
    """The grade_ids of every nbgrader cell of the assignment (graded, solution, locked), from the
    gradebook."""
    with Gradebook(db_url(course)) as gb:
        return [cell.name for cell in gb.find_notebook(assignment, assignment).source_cells]


def known_students(course: str | Path) -> list[str]:
    with Gradebook(db_url(course)) as gb:
        return sorted(s.id for s in gb.students)


def record(course: str | Path, result: Result, timestamp: str | None = None) -> None:
    """Write one worker Result into the real gradebook: its auto scores and late penalty.

    Scores an instructor set by hand (manual_score, extra_credit) are left as they are.
    """
    with Gradebook(db_url(course)) as gb:
        gb.update_or_create_student(result.student)
        kwargs = {"timestamp": timestamp} if timestamp else {}
        gb.update_or_create_submission(result.assignment, result.student, **kwargs)
        nb = gb.find_submission_notebook(result.assignment, result.assignment, result.student)
        for grade in nb.grades:
            score, _ = result.scores.get(grade.name, (0.0, None))
            grade.auto_score = float(score)
            grade.needs_manual_grade = False
        nb.late_submission_penalty = result.late_penalty or None
        gb.db.commit()


def read_extra_credit_allowed(course: str | Path) -> dict[tuple[str, str, str], float]:
    """{(student, assignment, grade_id): points} from the instructor's ``extra_credit.csv`` (may not
    exist)."""
    path = Path(course) / "extra_credit.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        return {(r["student"], r["assignment"], r["grade_id"]): float(r["points"]) for r in csv.DictReader(f)}


def check(course: str | Path) -> list[str]:
    """Problems (list of str) that make the gradebook unfit to export: a score outside its cell's range, or
    extra credit the instructor did not list in extra_credit.csv."""
    allowed = read_extra_credit_allowed(course)
    problems = []
    with Gradebook(db_url(course)) as gb:
        for assignment in gb.assignments:
            for sub in assignment.submissions:
                for nb in sub.notebooks:
                    for g in nb.grades:
                        where = f"{sub.student.id}/{assignment.name}/{g.name}"
                        for label, value in (("auto score", g.auto_score), ("manual score", g.manual_score)):
                            if value is not None and not 0 <= value <= g.max_score:
                                problems.append(f"{where}: {label} {value} outside 0..{g.max_score}")
                        extra = g.extra_credit or 0
                        if extra and allowed.get((sub.student.id, assignment.name, g.name)) != extra:
                            problems.append(f"{where}: extra credit {extra} that extra_credit.csv does not "
                                            "list")
    return problems


def submitted_students(course: str | Path, assignment: str) -> set[str]:
    """The students whose submission of ``assignment`` the gradebook holds (a set of ids)."""
    with Gradebook(db_url(course)) as gb:
        try:
            return {sub.student.id for sub in gb.find_assignment(assignment).submissions}
        except MissingEntry:
            return set()
