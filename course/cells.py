"""What a cell of an nbgrader notebook is, decided in one place for the self-check and the grader.

nbgrader marks cells in their metadata (``cell["metadata"]["nbgrader"]``): ``solution: true`` for a cell the
student writes, ``grade: true`` for a cell that gives points. A *test cell* (nbgrader's "autograder tests")
is a code cell that gives points and is not a solution. ``course.selfcheck`` runs the visible ones; the
class grader (``autograder``) judges them with the hidden tests put back.

A cell is the dict of a notebook's JSON (``json.load``) or an ``nbformat.NotebookNode``, which is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def nbgrader_meta(cell: Mapping[str, Any]) -> Mapping[str, Any]:
    """The cell's nbgrader metadata; empty for a cell nbgrader does not manage."""
    return cell.get("metadata", {}).get("nbgrader", {})


def is_test_cell(cell: Mapping[str, Any]) -> bool:
    """A graded code cell that is not a solution: an autograder test cell."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_solution_cell(cell: Mapping[str, Any]) -> bool:
    """A code cell the student writes (``solution: true``), graded or not."""
    return cell.get("cell_type") == "code" and bool(nbgrader_meta(cell).get("solution"))


def is_given_cell(cell: Mapping[str, Any]) -> bool:
    """A code cell nbgrader neither grades nor lets the student answer in: code the notebook gives."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and not meta.get("solution") and not meta.get("grade")
