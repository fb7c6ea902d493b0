"""What grading one submission gave (``Result``), as the parent stores it and a Dask task returns it as
JSON."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Result:
    """What grading one submission gave.

    status: "graded", "crashed" (kernel died), "timed out" (notebook wall time), "rejected" (not gradable:
    reason says why), "missing" (nothing submitted), "error" (the grader failed; reason has its output).
    scores: {grade_id: [score, max_score]} for every graded cell of the assignment.
    failed: {grade_id: why} for test cells that earned less than their maximum.
    flags: what the instructor should look at: the kernel sent data the judge refused, stopped answering, or
        the grader itself failed on a test (empty for honest and for merely wrong work).
    removed: active content (script, and what can carry it) removed from the autograded notebook
        (autograder.grade.active_content); empty for an honest submission.
    test_seconds: {grade_id: wall seconds} each test cell took in the judge, its calls into the kernel
        included.
    where: the machine (local backend) or the Dask worker's address that graded it; seconds: how long it
        took there.
    """

    student: str
    assignment: str
    status: str
    reason: str = ""
    scores: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    flags: list = field(default_factory=list)
    seconds: float = 0.0
    late_penalty: float = 0.0
    autograded: str = None
    removed: list = field(default_factory=list)
    test_seconds: dict = field(default_factory=dict)
    where: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
