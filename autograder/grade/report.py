"""The instructor's report after grading: which tests the class failed most, and which submissions broke.

Writes ``reports/<assignment>/report.md`` (a table), ``failure_rates.png`` (a bar chart) and
``results.json`` (every Result) under the course folder; returns the Markdown text.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from autograder.grade.result import Result
    from autograder.sandbox.policy import Limits


def failure_rates(results: list[Result], cells: Iterable[str]) -> dict[str, tuple[int, int]]:
    """{grade_id: (failed, graded)} over the results that were graded or crashed (rejections excluded)."""
    rates = {gid: [0, 0] for gid in cells}
    for r in results:
        if r.status in ("rejected", "missing"):
            continue
        for gid in cells:
            rates[gid][1] += 1
            if gid in r.failed:
                rates[gid][0] += 1
    return {gid: tuple(v) for gid, v in rates.items()}


def _counts(results: list[Result]) -> str:
    """'38 graded, 2 not graded, 1 missing' (the statuses as the grader groups them)."""
    groups = {"graded": ("graded", "crashed", "timed out"), "not graded": ("rejected", "error"),
              "missing": ("missing",)}
    counts = {label: sum(r.status in statuses for r in results) for label, statuses in groups.items()}
    return ", ".join(f"{n} {label}" for label, n in counts.items() if n) or "none"


def write(course: str | Path, assignment: str, results: list[Result], cells: dict[str, float], seconds: float,
          workers: int, limits: Limits | None = None, backend: str = "local", reused: int = 0) -> str:
    """Write the report; returns its Markdown. limits (autograder.sandbox.policy.Limits): say which are in
    force; backend: "local" or "dask"; reused: how many results are from an earlier run (unchanged
    submissions)."""
    out = Path(course) / "reports" / assignment
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([r.to_json() for r in results], indent=1))
    rates = failure_rates(results, cells)
    lines = [f"# Grading report: {assignment}", "",
             f"{len(results)} submissions in {seconds:.0f} s with {workers} workers ({backend} backend): "
             f"{_counts(results)}.", "",
             *([f"{reused} of them graded by an earlier run and unchanged since (not graded again; --force "
                "grades everything).", ""] if reused else []),
             *([f"Limits: {_limits_in_force(limits)}.", ""] if limits is not None else []),
             "## Tests by failure rate", "", "| test | points | failed | of |", "|---|---|---|---|"]
    for gid, (failed, graded) in sorted(rates.items(), key=lambda kv: -kv[1][0] / max(kv[1][1], 1)):
        lines.append(f"| {gid} | {cells[gid]:g} | {failed} | {graded} |")
    trouble = [r for r in results if r.status != "graded" or r.reason]
    lines += ["", "## Submissions that did not grade cleanly", ""]
    lines += [f"- **{r.student}**: {r.status}. {r.reason}" for r in trouble] or ["None."]
    flagged = [r for r in results if r.flags]
    lines += ["", "## Flagged by the judge (look at these by hand)", ""]
    lines += ([f"- **{r.student}**: {'; '.join(dict.fromkeys(r.flags))[:400]}" for r in flagged]
              or ["Nothing."])
    lines += ["", "## Active content removed from submissions", ""]
    lines += ([f"- **{r.student}**: {'; '.join(r.removed)[:400]}" for r in results if r.removed]
              or ["Nothing."])
    lines += ["", "## Where submissions were graded", "",
              "| where | submissions | seconds in all | slowest (s) |", "|---|---|---|---|"]
    lines += [f"| {where} | {n} | {total:.0f} | {slowest:.1f} |"
              for where, (n, total, slowest) in _places(results).items()]
    lines += ["", "Each submission's place and seconds are in results.json (where, seconds)."]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    _plot(rates, out / "failure_rates.png", assignment)
    return text


def _places(results: list[Result]) -> dict[str, tuple[int, float, float]]:
    """{where: (submissions, seconds in all, slowest)} over the results that ran somewhere."""
    out = {}
    for r in results:
        if r.where:
            n, total, slowest = out.get(r.where, (0, 0.0, 0.0))
            out[r.where] = (n + 1, total + r.seconds, max(slowest, r.seconds))
    return dict(sorted(out.items()))


def _limits_in_force(limits: Limits) -> str:
    from autograder.sandbox.policy import limits_in_force

    return limits_in_force(limits)


def preload() -> None:
    """Import matplotlib (with the file-only Agg backend) ahead of time: the grader calls this in a thread
    while kernels run, so that the report does not wait for the import afterwards."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


def _plot(rates: dict[str, tuple[int, int]], path: Path, assignment: str) -> None:
    preload()
    import matplotlib.pyplot as plt

    names = list(rates)
    share = [100 * f / g if g else 0 for f, g in rates.values()]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.2))
    ax.barh(names, share, color="tab:red")
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("submissions failing the test (%)")
    ax.set_title(f"{assignment}: which tests the class found hardest")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
