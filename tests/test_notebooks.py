"""Every source notebook runs top to bottom on the CPU in grading mode, its tests (hidden ones included) passing.

A run of the source executes every test cell with the instructor's solutions, so a failing test is an error
here: this is what ``nbgrader validate`` on the source checked, without running each notebook a second time.
That the released notebooks fail every graded test (``nbgrader validate --invert``) is the blank case of
tests/test_autograde.py, graded 0 in every cell by stock nbgrader and by the class grader.
"""
import time

import nbformat
import pytest
from nbclient import NotebookClient

from autograder.course_dir import ROOT, assignments

ASSIGNMENTS = assignments(ROOT)
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_source_notebook_runs_headless_in_grading_mode(name, record_timing):
    """Run every cell with nbclient (COURSE_FAST=1 from conftest): no cell may raise or time out, test cells
    included, so every test passes on the instructor's solutions."""
    path = ROOT / "source" / name / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    record_timing(f"{name}: whole notebook on the CPU in grading mode (nbclient)", time.perf_counter() - start)
    errors = [
        f"cell {cell.id}: {out.ename}: {out.evalue}"
        for cell in nb.cells if cell.cell_type == "code"
        for out in cell.outputs if out.output_type == "error"
    ]
    assert not errors, "\n".join(errors)
    figures = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {}))
    assert figures >= 1, "every notebook shows at least one plot"
