"""nbgrader's Execute step with each graded test cell sent as ``__grader_test__(source, grade_id)``.

The source sent is the *gradebook's* source of that test, never the cell's text: a test cell the student
deleted comes back from nbgrader's ``OverwriteCells`` with a comment in front of it, and an edited locked cell
has been overwritten already; either way the test that runs, and whose hash the sealed kernel signs, is
exactly the instructor's. The notebook nbgrader writes keeps the cell's own text; only what the kernel is asked
to run changes, so that the sealed kernel (``autograder.seal``) runs the test against sealed modules and signs
the outcome. A cell that claims test metadata for a grade_id the gradebook does not hold runs as an ordinary
cell. Used by the grading worker through ``c.Autograde.autograde_preprocessors``; never by plain nbgrader.
"""
from nbgrader.preprocessors import Execute


def is_test_cell(cell):
    """A graded code cell that is not a solution: an autograder test cell."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def gradebook_tests(db_url, notebook, assignment):
    """{grade_id: source} of every autograder test cell of ``notebook`` in ``assignment``, from the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    out = {}
    with Gradebook(db_url) as gb:
        for cell in gb.find_notebook(notebook, assignment).grade_cells:
            if cell.cell_type != "code":
                continue
            try:
                gb.find_solution_cell(cell.name, notebook, assignment)
                continue  # an autograded answer, not a test
            except MissingEntry:
                pass
            out[cell.name] = gb.find_source_cell(cell.name, notebook, assignment).source
    return out


class SealedExecute(Execute):
    def preprocess(self, nb, resources, *args, **kwargs):
        info = resources["nbgrader"]
        self.gradebook_tests = gradebook_tests(info["db_url"], info["notebook"], info["assignment"])
        return super().preprocess(nb, resources, *args, **kwargs)

    def preprocess_cell(self, cell, resources, index):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if not is_test_cell(cell) or grade_id not in self.gradebook_tests:
            return super().preprocess_cell(cell, resources, index)
        shown = cell.source
        cell.source = f"__grader_test__({self.gradebook_tests[grade_id]!r}, {grade_id!r})"
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            cell.source = shown
