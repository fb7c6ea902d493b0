"""Grade one assignment's submissions: intake, the ledger of what was graded, a runner (``LocalRunner`` here,
or ``dask_backend.DaskRunner``) that grades each with ``worker.grade_one``, then the gradebook, feedback and
export. The command around it is ``autograder.grade.cli``."""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autograder.grade.nbgrader_server import run_nbgrader
from autograder.grade.result import Result
from autograder.grade.worker import Job, grade_one

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tqdm.auto import tqdm

    from autograder.grade.dask_backend import DaskRunner
    from autograder.grade.kernels import KernelPool
    from autograder.sandbox.policy import Limits

# nbgrader, nbformat and what imports them (autograder.grade.gradebook_io, autograder.grade.intake) take
# seconds to import: they are imported where used, after the kernels have been started
# (autograder.grade.kernels).

log = logging.getLogger("autograder.grade")
NOT_GRADED = ("rejected", "error")
EXIT_SOME_NOT_GRADED = 3  # the command's exit status when any submission was not graded (the report says why)


class LocalRunner:
    """The local backend: ``workers`` threads on this machine, each grading one submission at a time with a
    pre-started kernel and a judge from ``kernels`` (an ``autograder.grade.kernels.KernelPool``).

    ``grade(jobs, ...)`` yields (job, Result or exception) as submissions finish, as
    ``autograder.grade.dask_backend``'s DaskRunner does on a cluster; both grade with
    ``autograder.grade.worker.grade_one``."""

    name = "local"

    def __init__(self, kernels: KernelPool, workers: int) -> None:
        self.kernels, self.workers = kernels, max(1, workers)

    def too_large(self, notebook_path: Path) -> str | None:
        return None  # intake's own limit (autograder.grade.intake.MAX_BYTES) is the only one on this machine

    def grade(self, jobs: list[Job], course: Path, assignment: str,
              gradebook: Path) -> Iterator[tuple[Job, Result | Exception]]:
        kernels = self.kernels
        kernels.expect(len(jobs))

        def judged(job: Job) -> Result:
            judge = kernels.judges.take()
            try:
                return grade_one(job, kernels.take(), judge)
            finally:
                kernels.judges.give(judge)

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {pool.submit(judged, job): job for job in jobs}
            for future in as_completed(futures):
                try:
                    yield futures[future], future.result()
                except Exception as err:  # noqa: BLE001  (one broken submission never stops the class)
                    yield futures[future], err


def grade_assignment(course: str | Path, assignment: str, runner: LocalRunner | DaskRunner, limits: Limits,
                     seed: int = 0, unsafe: bool = False, data_dir: str | None = None, progress: bool = True,
                     force: bool = True) -> tuple[list[Result], float, dict[str, float], int]:
    """Grade the submissions of one assignment with ``runner`` (LocalRunner or ``dask_backend.DaskRunner``);
    returns (list of Result, seconds, {grade_id: max_score}, number of submissions not graded again).

    No submission's data can stop the others: whatever goes wrong with one (its files, its timestamp, its
    grading, writing its grades) makes that one "rejected" or "error" with the reason, and the class goes on.
    force: grade every submission; otherwise one whose grading is final and unchanged since
    (``autograder.grade.ledger``) keeps its recorded Result and grades."""
    import nbformat

    from autograder.grade import gradebook_io, intake, ledger

    course = Path(course).resolve()
    try:
        cells = gradebook_io.graded_cells(course, assignment)
        known_ids = gradebook_io.cell_ids(course, assignment)
    except Exception as err:  # noqa: BLE001  (MissingEntry, or no gradebook at all)
        raise SystemExit(f"{assignment} is not in the gradebook ({err}): "
                         f"run `nbgrader generate_assignment {assignment}` first") from None
    start = time.perf_counter()
    workspace = Path(tempfile.mkdtemp(prefix=f"grade-{assignment}-"))
    gradebook_copy = workspace / "gradebook.db"
    shutil.copy2(course / "gradebook.db", gradebook_copy)
    max_scores = {gid: max_score for gid, (max_score, _) in cells.items()}
    book = ledger.Ledger(course, assignment)
    material = ledger.material_digest(course, assignment)
    options = dict(limits=asdict(limits), seed=seed, unsafe=unsafe, data_dir=data_dir)
    recorded = set() if force else gradebook_io.submitted_students(course, assignment)

    def ungraded(student: str, status: str, reason: str) -> Result:
        return Result(intake.shown_id(student), assignment, status, reason,
                      {gid: [0.0, m] for gid, m in max_scores.items()})

    results, jobs, timestamps, secrets, keys, notes_of, reused = [], [], {}, {}, {}, {}, set()
    submissions = intake.find_submissions(course, assignment)
    for student in sorted(set(gradebook_io.known_students(course)) - set(submissions)):
        results.append(ungraded(student, "missing", "no submission"))
    for student, sub in submissions.items():
        if sub.rejected:
            results.append(ungraded(student, "rejected", sub.rejected))
            continue
        try:
            nb, notes = intake.sanitise(sub.folder, assignment, known_ids)
            timestamps[student] = intake.read_timestamp(sub.folder)
            secrets[student] = intake.read_secret(sub.folder)
            data = nbformat.writes(nb).encode()
            keys[student] = ledger.key(data, timestamps[student], material, options)
            before = None if force or student not in recorded else book.done(student, keys[student])
            if before is not None and (before.get("autograded") is None
                                       or (course / "autograded" / student / assignment).is_dir()):
                results.append(_reused(before, course))
                reused.add(student)
                continue
            clean = workspace / "in" / student / f"{assignment}.ipynb"
            clean.parent.mkdir(parents=True)
            clean.write_bytes(data)
        except intake.Rejected as err:
            results.append(ungraded(student, "rejected", str(err)))
            continue
        except Exception as err:  # noqa: BLE001  (one submission's data never stops the class)
            results.append(ungraded(student, "error",
                                    f"the grader could not read it: {type(err).__name__}: {err}"[:300]))
            continue
        too_large = runner.too_large(clean)
        if too_large:
            results.append(ungraded(student, "rejected", too_large))
            continue
        notes_of[student] = notes
        jobs.append(Job(student, assignment, course, gradebook_copy, clean, limits, cells, seed, unsafe,
                        timestamps[student]))
    bar = _progress(len(jobs), assignment, progress)
    waiting = {job.student: job for job in jobs}
    try:
        for job, outcome in runner.grade(jobs, course, assignment, gradebook_copy):
            if waiting.pop(job.student, None) is None:
                # never twice: a backend that reports a submission again is not believed the second time
                continue
            if isinstance(outcome, BaseException):
                result = ungraded(job.student, "error", f"{type(outcome).__name__}: {outcome}"[:300])
            else:
                result = outcome
            if notes_of.get(job.student):
                result.reason = "; ".join(filter(None, [result.reason, *notes_of[job.student]]))
            results.append(result)
            bar.update(1)
    except Exception as err:  # noqa: BLE001  (the backend itself failed: what it graded is kept, the rest reported)
        log.error("the %s backend stopped: %s: %s", runner.name, type(err).__name__, err)
        for student in sorted(waiting):
            results.append(ungraded(student, "error", f"not graded: the {runner.name} backend stopped "
                                                      f"({type(err).__name__}: {err})"[:300]))
    bar.close()
    for result in sorted(results, key=lambda r: r.student):
        if (result.status == "missing" or not intake.valid_student_id(result.student)
                or result.student in reused):
            continue  # nothing is created in the gradebook for an id that is not valid
        try:
            _store(course, assignment, result, timestamps.get(result.student), secrets.get(result.student))
        except Exception as err:  # noqa: BLE001
            result.status, result.reason = "error", (
                f"could not store the grades: {type(err).__name__}: {err}"[:300])
            book.forget(result.student)
            continue
        if result.student in keys:
            book.record(result.to_json(), keys[result.student])
    shutil.rmtree(workspace, ignore_errors=True)
    return sorted(results, key=lambda r: r.student), time.perf_counter() - start, max_scores, len(reused)


def _reused(recorded: dict[str, Any], course: Path) -> Result:
    """The Result (from the ledger's JSON) of a submission not graded again; its autograded folder is the
    course's."""
    from dataclasses import fields

    result = Result(**{f.name: recorded[f.name] for f in fields(Result) if f.name in recorded})
    folder = Path(course) / "autograded" / result.student / result.assignment
    result.autograded = str(folder) if folder.is_dir() else None
    return result


def _store(course: Path, assignment: str, result: Result, timestamp: str | None, secret: str | None) -> None:
    """Write one Result into the gradebook and its autograded notebook into ``autograded/``, with the
    exchange's ``submission_secret.txt`` beside it as ``nbgrader autograde`` does (``release_feedback`` names
    each feedback file with it; workers never see it)."""
    from autograder.grade import gradebook_io

    gradebook_io.record(course, result, timestamp)
    dest = course / "autograded" / result.student / assignment
    if dest.exists():
        shutil.rmtree(dest)
    if result.autograded:
        shutil.copytree(result.autograded, dest)
        if secret:
            (dest / "submission_secret.txt").write_text(secret)


def _progress(total: int, assignment: str, enabled: bool) -> tqdm:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"grading {assignment}", unit="submission", disable=not enabled)


def feedback(course: Path, assignment: str, results: list[Result]) -> None:
    """``nbgrader generate_feedback`` for the assignment; if it fails, once per graded student, so that one
    notebook nbgrader cannot render costs only that student's feedback (noted in their Result's reason)."""
    if run_nbgrader(["generate_feedback", assignment, "--force"], course)[0] == 0:
        return
    for result in results:
        if result.autograded is None or result.status in NOT_GRADED:
            continue
        rc, output, _ = run_nbgrader(
            ["generate_feedback", assignment, "--force", "--student", result.student], course)
        if rc != 0:
            why = output.strip().splitlines()[-1][-200:] if output.strip() else f"exit {rc}"
            result.reason = "; ".join(filter(None, [result.reason,
                                                    f"no feedback: nbgrader could not render it ({why})"]))


def export(course: str | Path, to: str = "grades.csv") -> Path:
    """Check the gradebook (``gradebook_io.check``), then run ``nbgrader export``. Raises ExportRefused."""
    from autograder.grade import gradebook_io

    problems = gradebook_io.check(course)
    if problems:
        raise gradebook_io.ExportRefused("refusing to export grades:\n  " + "\n  ".join(problems))
    _nbgrader(["export", "--to", str(to)], course)
    return Path(course) / to


def _nbgrader(args: list[str], course: str | Path) -> None:
    """``nbgrader ARGS`` in the course, through the warm fork server; RuntimeError with its output if it
    fails."""
    rc, output, _ = run_nbgrader(args, course)
    if rc != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed ({rc}):\n{output[-3000:]}")


