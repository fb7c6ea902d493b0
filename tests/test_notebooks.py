"""Every source notebook runs top to bottom on the CPU in grading mode, and nbgrader validates it.

The released notebooks fail every graded test: a blank notebook earns nothing.
"""
import time

import nbformat
import pytest
from nbclient import NotebookClient

from autograder.course_dir import ROOT, assignments, nbgrader

ASSIGNMENTS = assignments(ROOT)
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_source_notebook_runs_headless_in_grading_mode(name, record_timing):
    """Run every cell with nbclient (COURSE_FAST=1 from conftest): no cell may raise or time out."""
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


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_nbgrader_validate_passes_on_source(name, tmp_path):
    """`nbgrader validate` on the instructor's notebook: every test, hidden ones included, passes."""
    proc = nbgrader(["validate", str(ROOT / "source" / name / f"{name}.ipynb")], cwd=ROOT)
    assert "Success! Your notebook passes all the tests." in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_nbgrader_validate_invert_on_release(name):
    """`nbgrader validate --invert` on the student's notebook: no graded test passes before any work."""
    proc = nbgrader(["validate", "--invert", str(ROOT / "release" / name / f"{name}.ipynb")], cwd=ROOT)
    assert "Success! The notebook does not pass any tests." in proc.stdout, proc.stdout + proc.stderr
