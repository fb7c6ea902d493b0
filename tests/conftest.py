"""Shared test setup: the course's fast switch, and a timing report at the end."""
import os
import sys
from pathlib import Path

import pytest

from autograder.publish.layout import ROOT

# Notebooks and nbgrader run in subprocesses: give them this interpreter's tools and the fast switch.
os.environ["COURSE_FAST"] = "1"
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
# Notebooks that use photos (04 onwards) read COURSE_DATA, in the kernel nbgrader or nbclient starts: point it
# at the real pets-3breeds subset. Where the photos are absent, those notebooks stop with course.data's
# message.
_PHOTOS = Path(os.environ.get("COURSE_TEST_DATA", ROOT.parent / "shared" / "data")) / "pets-3breeds"
if _PHOTOS.is_dir():
    os.environ.setdefault("COURSE_DATA", str(_PHOTOS))

_TIMINGS = []


@pytest.fixture(scope="session")
def record_timing():
    """record_timing(label, seconds): printed in pytest's summary, so CI logs show how long things take."""

    def record(label, seconds):
        _TIMINGS.append((label, seconds))

    return record


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        terminalreporter.section("timings (this machine)")
        for label, seconds in _TIMINGS:
            terminalreporter.write_line(f"{seconds:9.3f} s  {label}")


@pytest.fixture(scope="session")
def shared_data():
    """The folder holding the real Oxford-IIIT Pet subsets (pets-sample/, pets-3breeds/).

    ``COURSE_TEST_DATA`` if set, else ``../shared/data`` beside the checkout. Tests that need the photos
    fail with this message, rather than skip, when they are absent.
    """
    path = Path(os.environ.get("COURSE_TEST_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "pets-3breeds" / "oxford-iiit-pet" / "images").is_dir():
        pytest.fail(
            f"real pet photos not found under {path}: set COURSE_TEST_DATA to the folder that holds "
            "pets-3breeds/ and pets-sample/ (in this project, ../shared/data beside the checkout)"
        )
    return path
