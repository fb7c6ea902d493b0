"""Grade a whole class: ``python -m autograder.grade 01_layers`` (or ``--all``) in the course folder.

For each assignment: every ``submitted/<student>/<assignment>/`` is checked (``autograder.intake``), graded
in parallel workers (``autograder.worker``; kernels sandboxed by ``autograder.sandbox``), written into the
gradebook by this process alone, then nbgrader's own ``generate_feedback`` runs, the gradebook is checked and
exported to CSV (``grades.csv``), and a report is written to ``reports/<assignment>/``.

Kernels are started ahead of the submissions (``autograder.kernels``), one per worker, right after the sandbox
is checked and before nbgrader is imported here. Refuses to grade when the sandbox cannot start, unless
``--unsafe-no-sandbox`` is given (logged loudly).

Two backends grade with the same function (``autograder.worker.grade_one``): ``LocalRunner`` (threads on this
machine, the default) and ``--backend dask`` (``autograder.dask_backend``: the workers of a Dask cluster). A
submission graded before and unchanged since keeps its grade unless ``--force`` (``autograder.ledger``).
"""
if __name__ == "__main__":
    import autograder.lean_imports  # noqa: F401  (before anything imports jsonschema)

    # First of all, start the fork server that runs nbgrader (autograder.worker): it spends ~2 s importing
    # nbgrader in its own process while this one imports what it needs, instead of after.
    from autograder.worker import start_nbgrader_server

    start_nbgrader_server()

import argparse
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from autograder import report
from autograder.dask_backend import CLUSTERS
from autograder.kernels import KernelPool
from autograder.sandbox import Limits, SandboxUnavailable, check_available, limits_in_force
from autograder.worker import Result, grade_one, run_nbgrader, start_nbgrader_server

# nbgrader, nbformat and what imports them (autograder.gradebook_io, autograder.intake) take seconds to import:
# they are imported where used, after the kernels have been started (autograder.kernels).

log = logging.getLogger("autograder.grade")
NOT_GRADED = ("rejected", "error")
EXIT_SOME_NOT_GRADED = 3  # the command's exit status when any submission was not graded (the report says why)


class LocalRunner:
    """The local backend: ``workers`` threads on this machine, each grading one submission at a time with a
    pre-started kernel and a judge from ``kernels`` (an ``autograder.kernels.KernelPool``).

    ``grade(jobs, ...)`` yields (job, Result or exception) as submissions finish, as ``autograder.dask_backend``'s
    DaskRunner does on a cluster; both grade with ``autograder.worker.grade_one``."""

    name = "local"

    def __init__(self, kernels, workers):
        self.kernels, self.workers = kernels, max(1, workers)

    def too_large(self, notebook_path):
        return None  # intake's own limit (autograder.intake.MAX_BYTES) is the only one on this machine

    def grade(self, jobs, course, assignment, gradebook):
        kernels = self.kernels
        kernels.expect(len(jobs))

        def judged(job):
            judge = kernels.judges.take()
            try:
                return grade_one(dict(job, font_cache=kernels.options["font_cache"]), kernels.take(), judge)
            finally:
                kernels.judges.give(judge)

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {pool.submit(judged, job): job for job in jobs}
            for future in as_completed(futures):
                try:
                    yield futures[future], future.result()
                except Exception as err:  # noqa: BLE001  (one broken submission never stops the class)
                    yield futures[future], err


def grade_assignment(course, assignment, runner, limits, seed=0, unsafe=False, data_dir=None, progress=True,
                     force=True):
    """Grade the submissions of one assignment with ``runner`` (LocalRunner or ``dask_backend.DaskRunner``);
    returns (list of Result, seconds, {grade_id: max_score}, number of submissions not graded again).

    No submission's data can stop the others: whatever goes wrong with one (its files, its timestamp, its
    grading, writing its grades) makes that one "rejected" or "error" with the reason, and the class goes on.
    force: grade every submission; otherwise one whose grading is final and unchanged since (``autograder.ledger``)
    keeps its recorded Result and grades."""
    import nbformat

    from autograder import gradebook_io, intake, ledger

    course = Path(course).resolve()
    try:
        cells = gradebook_io.graded_cells(course, assignment)
        known_ids = gradebook_io.cell_ids(course, assignment)
    except Exception as err:  # noqa: BLE001  (MissingEntry, or no gradebook at all)
        raise SystemExit(f"{assignment} is not in the gradebook ({err}): run `nbgrader generate_assignment {assignment}` first") from None
    start = time.perf_counter()
    workspace = Path(tempfile.mkdtemp(prefix=f"grade-{assignment}-"))
    gradebook_copy = workspace / "gradebook.db"
    shutil.copy2(course / "gradebook.db", gradebook_copy)
    max_scores = {gid: max_score for gid, (max_score, _) in cells.items()}
    book = ledger.Ledger(course, assignment)
    material = ledger.material_digest(course, assignment)
    options = dict(limits=asdict(limits), seed=seed, unsafe=unsafe, data_dir=data_dir)
    recorded = set() if force else gradebook_io.submitted_students(course, assignment)

    def ungraded(student, status, reason):
        return Result(intake.shown_id(student), assignment, status, reason, {gid: [0.0, m] for gid, m in max_scores.items()})

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
            results.append(ungraded(student, "error", f"the grader could not read it: {type(err).__name__}: {err}"[:300]))
            continue
        too_large = runner.too_large(clean)
        if too_large:
            results.append(ungraded(student, "rejected", too_large))
            continue
        notes_of[student] = notes
        jobs.append(dict(student=student, assignment=assignment, course=str(course), gradebook=str(gradebook_copy),
                         notebook=str(clean), limits=asdict(limits), workspace=str(workspace), data_dir=data_dir,
                         seed=seed, unsafe_no_sandbox=unsafe, cells=cells, timestamp=timestamps[student]))
    bar = _progress(len(jobs), assignment, progress)
    waiting = {job["student"]: job for job in jobs}
    try:
        for job, outcome in runner.grade(jobs, course, assignment, gradebook_copy):
            if waiting.pop(job["student"], None) is None:
                continue  # never twice: a backend that reports a submission again is not believed the second time
            if isinstance(outcome, BaseException):
                result = ungraded(job["student"], "error", f"{type(outcome).__name__}: {outcome}"[:300])
            else:
                result = outcome
            if notes_of.get(job["student"]):
                result.reason = "; ".join(filter(None, [result.reason, *notes_of[job["student"]]]))
            results.append(result)
            bar.update(1)
    except Exception as err:  # noqa: BLE001  (the backend itself failed: what it graded is kept, the rest reported)
        log.error("the %s backend stopped: %s: %s", runner.name, type(err).__name__, err)
        for student in sorted(waiting):
            results.append(ungraded(student, "error", f"not graded: the {runner.name} backend stopped "
                                                      f"({type(err).__name__}: {err})"[:300]))
    bar.close()
    for result in sorted(results, key=lambda r: r.student):
        if result.status == "missing" or not intake.valid_student_id(result.student) or result.student in reused:
            continue  # nothing is created in the gradebook for an id that is not valid
        try:
            _store(course, assignment, result, timestamps.get(result.student), secrets.get(result.student))
        except Exception as err:  # noqa: BLE001
            result.status, result.reason = "error", f"could not store the grades: {type(err).__name__}: {err}"[:300]
            book.forget(result.student)
            continue
        if result.student in keys:
            book.record(result.to_json(), keys[result.student])
    shutil.rmtree(workspace, ignore_errors=True)
    return sorted(results, key=lambda r: r.student), time.perf_counter() - start, max_scores, len(reused)


def _reused(recorded, course):
    """The Result (from the ledger's JSON) of a submission not graded again; its autograded folder is the course's."""
    from dataclasses import fields

    result = Result(**{f.name: recorded[f.name] for f in fields(Result) if f.name in recorded})
    folder = Path(course) / "autograded" / result.student / result.assignment
    result.autograded = str(folder) if folder.is_dir() else None
    return result


def _store(course, assignment, result, timestamp, secret):
    """Write one Result into the gradebook and its autograded notebook into ``autograded/``, with the
    exchange's ``submission_secret.txt`` beside it as ``nbgrader autograde`` does (``release_feedback`` names
    each feedback file with it; workers never see it)."""
    from autograder import gradebook_io

    gradebook_io.record(course, result, timestamp)
    dest = course / "autograded" / result.student / assignment
    if dest.exists():
        shutil.rmtree(dest)
    if result.autograded:
        shutil.copytree(result.autograded, dest)
        if secret:
            (dest / "submission_secret.txt").write_text(secret)


def _progress(total, assignment, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"grading {assignment}", unit="submission", disable=not enabled)


def feedback(course, assignment, results):
    """``nbgrader generate_feedback`` for the assignment; if it fails, once per graded student, so that one
    notebook nbgrader cannot render costs only that student's feedback (noted in their Result's reason)."""
    if run_nbgrader(["generate_feedback", assignment, "--force"], course)[0] == 0:
        return
    for result in results:
        if result.autograded is None or result.status in NOT_GRADED:
            continue
        rc, output, _ = run_nbgrader(["generate_feedback", assignment, "--force", "--student", result.student], course)
        if rc != 0:
            why = output.strip().splitlines()[-1][-200:] if output.strip() else f"exit {rc}"
            result.reason = "; ".join(filter(None, [result.reason, f"no feedback: nbgrader could not render it ({why})"]))


def export(course, to="grades.csv"):
    """Check the gradebook (``gradebook_io.check``), then run ``nbgrader export``. Raises ExportRefused."""
    from autograder import gradebook_io

    problems = gradebook_io.check(course)
    if problems:
        raise gradebook_io.ExportRefused("refusing to export grades:\n  " + "\n  ".join(problems))
    _nbgrader(["export", "--to", str(to)], course)
    return Path(course) / to


def _nbgrader(args, course):
    """``nbgrader ARGS`` in the course, through the warm fork server; RuntimeError with its output if it fails."""
    rc, output, _ = run_nbgrader(args, course)
    if rc != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed ({rc}):\n{output[-3000:]}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m autograder.grade", description=__doc__.split("\n")[0],
        epilog=f"Exit status: 0 when every submission was graded, {EXIT_SOME_NOT_GRADED} when some were not (rejected "
               "or failed: the report lists each with its reason; the others are graded and exported), 1 on errors.")
    parser.add_argument("assignments", nargs="*", help="assignment names, e.g. 01_layers")
    parser.add_argument("--all", action="store_true", help="every assignment in source/")
    parser.add_argument("--course", default=".", help="the course folder (holds nbgrader_config.py); default: here")
    parser.add_argument("--workers", type=int, default=None,
                        help="parallel workers (default: this machine's cores); with --backend dask, the workers of "
                             "a cluster made here (--cluster, or a LocalCluster when no scheduler is configured)")
    parser.add_argument("--backend", choices=("local", "dask"), default="local",
                        help="local: this machine (default); dask: the workers of a Dask cluster (README: 'Grading "
                             "on a cluster')")
    parser.add_argument("--scheduler", help="with --backend dask: the scheduler's address, e.g. tcp://10.0.0.5:8786 "
                                            "(default: Dask's configured scheduler-address, else a cluster made here)")
    parser.add_argument("--cluster", choices=list(CLUSTERS),
                        help="with --backend dask and no --scheduler: make this kind of cluster, configured by Dask's "
                             "own configuration (dask-jobqueue, dask-kubernetes, dask-gateway)")
    parser.add_argument("--worker-timeout", type=float, default=120,
                        help="with --backend dask: seconds to wait for the first worker (default 120)")
    parser.add_argument("--max-submission-mb", type=float, default=16,
                        help="with --backend dask: the largest notebook a task carries to a worker (default 16)")
    parser.add_argument("--force", action="store_true",
                        help="grade every submission again, also those graded before and unchanged since")
    parser.add_argument("--cell-timeout", type=int, default=Limits.cell_s, help="seconds per cell")
    parser.add_argument("--notebook-timeout", type=int, default=Limits.notebook_s, help="seconds per notebook")
    parser.add_argument("--memory-gb", type=float, default=Limits.memory / 2**30, help="address space per process")
    parser.add_argument("--sandbox-memory-gb", type=float, default=None,
                        help="memory of a sandbox's processes together, where a cgroup can hold them (default: "
                             "--memory-gb plus 2, so that one process meets its own limit first)")
    parser.add_argument("--seed", type=int, default=0, help="seed every generator in each kernel (default 0)")
    parser.add_argument("--no-feedback", action="store_true", help="skip nbgrader generate_feedback")
    parser.add_argument("--no-export", action="store_true", help="skip the checked CSV export")
    parser.add_argument("--unsafe-no-sandbox", action="store_true",
                        help="run student code WITHOUT the sandbox (limits only): only for code you trust")
    args = parser.parse_args(argv)
    args.workers_given = args.workers is not None
    if args.workers is None:
        args.workers = os.cpu_count() or 1
    if args.backend == "local" and (args.scheduler or args.cluster):
        parser.error("--scheduler and --cluster need --backend dask")
    if args.scheduler and args.cluster:
        parser.error("pass --scheduler or --cluster, not both")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    course = Path(args.course).resolve()
    if not (course / "nbgrader_config.py").exists():
        parser.error(f"{course} has no nbgrader_config.py: pass --course with the course folder")
    names = args.assignments
    if args.all:
        from autograder.course_dir import assignments

        names = assignments(course)
    if not names:
        parser.error("name at least one assignment, or pass --all")
    start_nbgrader_server()  # already running when run as a command; imports nbgrader in its own process
    threading.Thread(target=report.preload, daemon=True).start()  # matplotlib, imported while kernels run
    if args.unsafe_no_sandbox:
        log.warning("WARNING: --unsafe-no-sandbox: student code runs with YOUR rights, network and files. "
                    "Resource limits still apply, and tests still run in the judge.")
    elif args.backend == "local":  # a Dask worker checks its own sandbox (autograder.dask_backend.check_worker)
        try:
            check_available()
        except SandboxUnavailable as err:
            sys.exit(f"error: {err}")
    sandbox_gb = args.sandbox_memory_gb if args.sandbox_memory_gb is not None else args.memory_gb + 2
    if sandbox_gb <= args.memory_gb:
        parser.error("--sandbox-memory-gb must exceed --memory-gb: a single process should get a MemoryError "
                     "before the whole sandbox is stopped")
    limits = Limits(cell_s=args.cell_timeout, notebook_s=args.notebook_timeout, memory=int(args.memory_gb * 2**30),
                    sandbox_memory=int(sandbox_gb * 2**30))
    log.info("limits: %s", limits_in_force(limits))
    data_dir = os.environ.get("COURSE_DATA")
    if args.backend == "local":
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if args.workers * limits.sandbox_memory > total:
            log.warning("WARNING: %d workers times %g GiB a sandbox exceeds this machine's %.0f GiB of memory: pass "
                        "fewer --workers or a smaller --sandbox-memory-gb", args.workers, sandbox_gb, total / 2**30)
        # One sandboxed kernel per worker starts importing torch now, while this process imports nbgrader.
        kernels = KernelPool(args.workers, limits, args.seed, args.unsafe_no_sandbox, data_dir)
        runner, close = LocalRunner(kernels, args.workers), kernels.close
    else:
        from autograder import dask_backend  # imports Dask only now

        client, cluster = dask_backend.connect(args.scheduler, args.cluster,
                                               args.workers if args.workers_given else None)

        def disconnect():
            client.close()
            if cluster is not None:
                cluster.close()
        try:
            runner = dask_backend.DaskRunner(client, args.worker_timeout, args.unsafe_no_sandbox,
                                             int(args.max_submission_mb * 2**20))
        except BaseException:
            disconnect()
            raise

        def close():
            runner.close()
            disconnect()
    not_graded = []
    try:
        for name in names:
            results, seconds, max_scores, reused = grade_assignment(
                course, name, runner, limits, args.seed, args.unsafe_no_sandbox, data_dir, force=args.force)
            if reused:
                log.info("%s: %d submissions graded before and unchanged since were not graded again (--force "
                         "grades them again)", name, reused)
            if not args.no_feedback:
                feedback(course, name, results)
            print(report.write(course, name, results, max_scores, seconds, runner.workers, limits,
                               backend=runner.name, reused=reused))
            not_graded += [f"{name}/{r.student}" for r in results if r.status in NOT_GRADED]
    finally:
        close()
    if not args.no_export:
        from autograder.gradebook_io import ExportRefused

        try:
            print(f"grades exported to {export(course)}")
        except (ExportRefused, RuntimeError) as err:
            sys.exit(f"error: {err}")
    if not_graded:
        print(f"{len(not_graded)} submissions were not graded (the report says why): {', '.join(not_graded[:20])}",
              file=sys.stderr)
        sys.exit(EXIT_SOME_NOT_GRADED)

if __name__ == "__main__":
    main()
