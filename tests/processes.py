"""Helpers for tests that watch real processes: wait for a condition, tell whether a pid still runs."""
import time
from pathlib import Path


def wait_until(predicate, seconds=60):
    """Poll ``predicate()`` every 0.1 s for up to ``seconds``; True as soon as it holds, False if it never did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def alive(pid):
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
