"""The course's nbgrader settings, each checked for the behaviour it is there for."""
import re
import subprocess
import sys
import warnings

from traitlets.config.loader import PyFileConfigLoader

from autograder.publish.layout import ROOT, nbgrader, scratch_course


def load_config():
    return PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()


def test_cell_time_limit_is_set_on_purpose():
    """nbgrader's 30 s default kills slow cells; ours is longer, finite, and the kernel may start slowly."""
    c = load_config()
    assert 30 < c.Execute.timeout <= 600
    assert c.Execute.startup_timeout >= 60


def test_deleted_test_cells_are_put_back():
    c = load_config()
    assert c.OverwriteCells.add_missing_cells is True


def test_ignore_pattern_matches_real_torch_warnings_and_nothing_else():
    """IgnorePattern drops stderr that is a Python or C++ warning, never an error or other stderr text."""
    import torch

    c = load_config()
    assert c.IgnorePattern.enabled is True
    pattern = c.IgnorePattern.pattern
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.tensor(torch.tensor([1.0]))  # torch warns: "To copy construct from a tensor, ..."
    assert caught, "expected torch to warn"
    w = caught[0]
    text = warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
    assert re.search(pattern, text), text
    cxx = "[W1124 10:00:00.000000 4242 Module.cpp:12] Warning: something (function operator())\n"
    assert re.search(pattern, cxx)
    for not_a_warning in [
        "Traceback (most recent call last):\nAssertionError: wrong answer\n",
        "error: the answer is wrong\n",
        "DeprecationWarning mentioned in prose\n",
        "loss 0.1\n",
    ]:
        assert not re.search(pattern, not_a_warning), not_a_warning


def test_nbgrader_recognises_every_setting(tmp_path):
    """nbgrader 0.9 ignores unknown options with only a log line (e.g. db_assignments,
    Validator.preprocessors)."""
    course = scratch_course(tmp_path / "course")
    proc = nbgrader(["generate_assignment", "01_layers", "--force"], cwd=course)
    log = proc.stdout + proc.stderr
    assert "not recognized" not in log, log
    assert "db_assignments" not in (ROOT / "nbgrader_config.py").read_text()


def test_import_course_under_nbgrader_shows_warnings_on_stdout():
    """Under nbgrader, `import course` moves Python warnings to stdout so Validate agrees with autograde."""
    code = "import warnings, course; warnings.warn('hello from a test', UserWarning)"
    env = {"NBGRADER_EXECUTION": "validate", "PATH": "/usr/bin:/bin"}
    graded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert "UserWarning: hello from a test" in graded.stdout and graded.stderr == ""
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin"}, cwd=ROOT)
    assert "UserWarning: hello from a test" in plain.stderr, "outside nbgrader warnings stay on stderr"
