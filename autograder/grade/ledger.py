"""What the grader has graded already, so that running it again grades only what is missing (``--force``:
all).

``reports/<assignment>/graded.json`` holds, for each student, the Result last recorded in the gradebook and
the key of what decided it: the sha256 of the sanitised notebook, its timestamp, the assignment's source
folder and ``nbgrader_config.py`` (the tests), the limits and the seed. A submission is graded again when its
key changed (a new submission, changed tests or limits), when its last grading was not final ("rejected" or
"error": the grader's fault or data that may be fixed), or when the gradebook no longer holds it. Written by
the parent alone, after each submission's grades are stored (replaced atomically), so that a run stopped
halfway (the machine, the scheduler or the command itself) leaves a ledger that names exactly what was
recorded.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("autograder.grade.ledger")
FINAL = ("graded", "crashed", "timed out")  # what a second grading of the same data would give again


def material_digest(course: str | Path, assignment: str) -> str:
    """sha256 (hex) of everything a grading run reads from the course besides the submission: every file of
    ``source/<assignment>/`` (path and bytes) and ``nbgrader_config.py``."""
    course = Path(course)
    h = hashlib.sha256()
    for path in sorted((course / "source" / assignment).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and ".ipynb_checkpoints" not in path.parts:
            h.update(str(path.relative_to(course)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update((course / "nbgrader_config.py").read_bytes())
    return h.hexdigest()


def key(notebook: bytes, timestamp: str | None, material: str, options: dict[str, Any]) -> str:
    """The key of one submission's grading: notebook (bytes, the sanitised copy), timestamp (str or None),
    material (``material_digest``), options (JSON-able: limits, seed, sandbox or not)."""
    h = hashlib.sha256(notebook)
    h.update(b"\0" + (timestamp or "").encode() + b"\0" + material.encode() + b"\0")
    h.update(json.dumps(options, sort_keys=True).encode())
    return h.hexdigest()


class Ledger:
    """The ledger of one assignment in one course folder."""

    def __init__(self, course: str | Path, assignment: str) -> None:
        self.path = Path(course) / "reports" / assignment / "graded.json"
        self.entries = {}
        if self.path.exists():
            try:
                entries = json.loads(self.path.read_text())
                if not isinstance(entries, dict):
                    raise ValueError("not a JSON object")
                self.entries = entries
            except (OSError, ValueError) as err:
                log.warning("WARNING: %s is unreadable (%s): every submission of this assignment is graded "
                            "again", self.path, err)

    def done(self, student: str, submission_key: str) -> dict[str, Any] | None:
        """The recorded Result's JSON (dict) when ``student``'s submission with this key was graded for good;
        else None."""
        entry = self.entries.get(student)
        if isinstance(entry, dict) and entry.get("key") == submission_key:
            result = entry.get("result")
            if isinstance(result, dict) and result.get("status") in FINAL:
                return result
        return None

    def record(self, result_json: dict[str, Any], submission_key: str) -> None:
        """Note that this Result (its JSON) is now in the gradebook; the file is replaced atomically."""
        self.entries[result_json["student"]] = {"key": submission_key, "result": result_json}
        self._write()

    def forget(self, student: str) -> None:
        """The student's grades could not be stored: their entry (if any) no longer describes the
        gradebook."""
        if self.entries.pop(student, None) is not None:
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".graded-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(self.entries, f, indent=1)
        os.replace(tmp, self.path)
