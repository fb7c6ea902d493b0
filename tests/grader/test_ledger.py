"""The grader's ledger (``autograder.grade.ledger``): what makes a submission be graded again, and what
survives a damaged file. Fast: no grading (``tests/grader/test_dask.py`` checks the ledger through the
command)."""
import json

from autograder.grade.ledger import Ledger, key, material_digest


def course_with_source(tmp_path):
    (tmp_path / "source" / "01_layers").mkdir(parents=True)
    (tmp_path / "source" / "01_layers" / "01_layers.ipynb").write_text("{}")
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    return tmp_path


def test_the_key_changes_with_everything_that_decides_a_grade(tmp_path):
    """Notebook, timestamp, tests (source folder, config), limits and seed each change the key; nothing
    else."""
    course = course_with_source(tmp_path)
    material = material_digest(course, "01_layers")
    base = key(b"nb", "2026-12-01 10:00:00", material, {"seed": 0})
    assert key(b"nb", "2026-12-01 10:00:00", material, {"seed": 0}) == base
    assert key(b"nb2", "2026-12-01 10:00:00", material, {"seed": 0}) != base
    assert key(b"nb", "2026-12-01 10:00:01", material, {"seed": 0}) != base
    assert key(b"nb", "2026-12-01 10:00:00", material, {"seed": 1}) != base
    (course / "source" / "01_layers" / "01_layers.ipynb").write_text('{"changed": 1}')
    assert material_digest(course, "01_layers") != material
    changed = material_digest(course, "01_layers")
    (course / "nbgrader_config.py").write_text("c = get_config()\nc.X = 1\n")
    assert material_digest(course, "01_layers") != changed


def test_only_final_grades_with_the_same_key_are_kept(tmp_path):
    """graded, crashed and timed out are final; rejected and error are graded again; another key: again."""
    book = Ledger(tmp_path, "01_layers")
    for student, status in (("a", "graded"), ("b", "crashed"), ("c", "timed out"), ("d", "rejected"),
                            ("e", "error")):
        book.record({"student": student, "status": status}, f"k-{student}")
    again = Ledger(tmp_path, "01_layers")  # read back from the file
    assert [s for s in "abcde" if again.done(s, f"k-{s}")] == ["a", "b", "c"]
    assert again.done("a", "another key") is None and again.done("nobody", "k") is None
    again.forget("a")
    assert Ledger(tmp_path, "01_layers").done("a", "k-a") is None


def test_a_damaged_ledger_means_grading_everything_again(tmp_path, caplog):
    """Not JSON, or JSON of the wrong shape: a warning, and nothing is taken as graded."""
    path = tmp_path / "reports" / "01_layers" / "graded.json"
    path.parent.mkdir(parents=True)
    for text in ("{not json", json.dumps([1, 2]), json.dumps({"a": "graded"}),
                 json.dumps({"a": {"key": "k"}})):
        path.write_text(text)
        assert Ledger(tmp_path, "01_layers").done("a", "k") is None
    assert "unreadable" in caplog.text
