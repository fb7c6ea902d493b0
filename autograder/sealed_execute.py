"""nbgrader's Execute step with each graded test cell sent as ``__grader_test__(source, grade_id)``.

The notebook nbgrader writes keeps the test cell's own source; only what the kernel is asked to run changes,
so that the sealed kernel (``autograder.seal``) runs the test against sealed modules and signs the outcome.
Used by the grading worker through ``c.Autograde.autograde_preprocessors``; never by plain nbgrader.
"""
from nbgrader.preprocessors import Execute


def is_test_cell(cell):
    """A graded code cell that is not a solution: an autograder test cell."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


class SealedExecute(Execute):
    def preprocess_cell(self, cell, resources, index):
        if not is_test_cell(cell):
            return super().preprocess_cell(cell, resources, index)
        original = cell.source
        cell.source = f"__grader_test__({original!r}, {cell.metadata['nbgrader'].get('grade_id')!r})"
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            cell.source = original
