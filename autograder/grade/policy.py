"""The scoring policy: which points each graded cell earns, from nbgrader's grades and the judge's results.

A test cell earns its points only if the judge ran the gradebook's source of that test and it passed; when
the kernel died or the notebook ran out of time, nbgrader keeps nothing, and the judge's results still say
which tests ran and passed before that: those keep their points, the rest get 0 with the reason.
"""
from __future__ import annotations

from typing import Any


def decide(cells: dict[str, tuple[float, bool]], nb_scores: dict[str, tuple[float | None, bool]] | None,
           results: list[dict[str, Any]],
           status: str) -> tuple[dict[str, list[float]], dict[str, str], list[str]]:
    """Per-cell scores from nbgrader's grades and the judge's results: returns (scores, failed, flags).

    cells: {grade_id: (max_score, is_test)} from autograder.grade.gradebook_io.graded_cells, read once by the
    parent; nb_scores: {grade_id: (auto_score, needs_manual)} or None when nbgrader kept nothing (kernel died,
    timed out); results: the judge's outcomes in the order the tests ran (dicts: grade_id, passed, why,
    grader_error). failed: {grade_id: why} in words for the student (the feedback shows it); flags: for the
    instructor's report.
    """
    tests, flags = {}, {}
    for rec in results:
        tests.setdefault(rec["grade_id"], rec)  # a test cell duplicated by the student: its first run counts
        why = rec.get("why", "")
        if rec.get("grader_error") or why.startswith(("ProtocolError", "PeerGone", "TestTimeout")):
            flags[f"{rec['grade_id']}: {why[:300]}"] = None
    scores, failed = {}, {}
    for gid, (max_score, is_test) in cells.items():
        nb = nb_scores.get(gid) if nb_scores else None
        if not is_test:
            scores[gid] = [nb[0] if nb and nb[0] is not None else 0.0, max_score]
            continue
        rec = tests.get(gid)
        if rec is None:
            why = (f"the test did not run: the notebook {status} before it" if status != "graded"
                   else "the test did not run")
        elif not rec["passed"]:
            why = rec.get("why") or "failed"
        else:
            why = None
        scores[gid] = [0.0 if why else float(max_score), max_score]
        if why:
            failed[gid] = why
    return scores, failed, list(flags)
