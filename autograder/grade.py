"""Grade a whole class: ``python -m autograder.grade 01_layers`` (or ``--all``) in the course folder.

For each assignment: every ``submitted/<student>/<assignment>/`` is checked (``autograder.intake``), graded
in parallel workers (``autograder.worker``; kernels sandboxed by ``autograder.sandbox``), written into the
gradebook by this process alone, then nbgrader's own ``generate_feedback`` runs, the gradebook is checked and
exported to CSV (``grades.csv``), and a report is written to ``reports/<assignment>/``.

Kernels are started ahead of the submissions (``autograder.kernels``), one per worker, right after the sandbox
is checked and before nbgrader is imported here. Refuses to grade when the sandbox cannot start, unless
``--unsafe-no-sandbox`` is given (logged loudly).
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
from autograder.kernels import KernelPool
from autograder.sandbox import Limits, SandboxUnavailable, check_available, limits_in_force
from autograder.worker import Result, grade_one, run_nbgrader, start_nbgrader_server

# nbgrader, nbformat and what imports them (autograder.gradebook_io, autograder.intake) take seconds to import:
# they are imported where used, after the kernels have been started (autograder.kernels).

log = logging.getLogger("autograder.grade")
NOT_GRADED = ("rejected", "error")
EXIT_SOME_NOT_GRADED = 3  # the command's exit status when any submission was not graded (the report says why)


def grade_assignment(course, assignment, workers, limits, seed=0, unsafe=False, data_dir=None, progress=True,
                     kernels=None):
    """Grade every submission of one assignment; returns (list of Result, seconds, {grade_id: max_score}).

    No submission's data can stop the others: whatever goes wrong with one (its files, its timestamp, its
    grading, writing its grades) makes that one "rejected" or "error" with the reason, and the class goes on.
    kernels: a KernelPool started with the same limits, seed, unsafe and data_dir (None: one is made here)."""
    if kernels is None:
        kernels = KernelPool(workers, limits, seed, unsafe, data_dir)
        try:
            return grade_assignment(course, assignment, workers, limits, seed, unsafe, data_dir, progress, kernels)
        finally:
            kernels.close()
    import nbformat

    from autograder import gradebook_io, intake

    course = Path(course).resolve()
    try:
        cells = gradebook_io.graded_cells(course, assignment)
        known_ids = gradebook_io.cell_ids(course, assignment)
    except Exception as err:  # noqa: BLE001  (MissingEntry, or no gradebook at all)
        raise SystemExit(f"{assignment} is not in the gradebook ({err}): run `nbgrader generate_assignment {assignment}` first") from None
    start = time.perf_counter()
    workspace = Path(tempfile.mkdtemp(prefix=f"grade-{assignment}-"))
    gradebook_copy = workspace / "gradebook.db"
    fonts = kernels.options["font_cache"]
    shutil.copy2(course / "gradebook.db", gradebook_copy)
    max_scores = {gid: max_score for gid, (max_score, _) in cells.items()}

    def ungraded(student, status, reason):
        return Result(intake.shown_id(student), assignment, status, reason, {gid: [0.0, m] for gid, m in max_scores.items()})

    results, jobs, timestamps, secrets = [], [], {}, {}
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
            clean = workspace / "in" / student / f"{assignment}.ipynb"
            clean.parent.mkdir(parents=True)
            nbformat.write(nb, clean)
        except intake.Rejected as err:
            results.append(ungraded(student, "rejected", str(err)))
            continue
        except Exception as err:  # noqa: BLE001  (one submission's data never stops the class)
            results.append(ungraded(student, "error", f"the grader could not read it: {type(err).__name__}: {err}"[:300]))
            continue
        jobs.append((dict(student=student, assignment=assignment, course=str(course), gradebook=str(gradebook_copy),
                          notebook=str(clean), limits=asdict(limits), workspace=str(workspace), data_dir=data_dir,
                          seed=seed, unsafe_no_sandbox=unsafe, cells=cells, timestamp=timestamps[student],
                          font_cache=fonts), notes))
    bar = _progress(len(jobs), assignment, progress)
    kernels.expect(len(jobs))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        def judged(job):
            judge = kernels.judges.take()
            try:
                return grade_one(job, kernels.take(), judge)
            finally:
                kernels.judges.give(judge)

        futures = {pool.submit(judged, job): (job, notes) for job, notes in jobs}
        for future in as_completed(futures):
            job, notes = futures[future]
            try:
                result = future.result()
            except Exception as err:  # noqa: BLE001  (one broken submission never stops the class)
                result = ungraded(job["student"], "error", f"{type(err).__name__}: {err}")
            if notes:
                result.reason = "; ".join(filter(None, [result.reason, *notes]))
            results.append(result)
            bar.update(1)
    bar.close()
    for result in sorted(results, key=lambda r: r.student):
        if result.status == "missing" or not intake.valid_student_id(result.student):
            continue  # nothing is created in the gradebook for an id that is not valid
        try:
            _store(course, assignment, result, timestamps.get(result.student), secrets.get(result.student))
        except Exception as err:  # noqa: BLE001
            result.status, result.reason = "error", f"could not store the grades: {type(err).__name__}: {err}"[:300]
    shutil.rmtree(workspace, ignore_errors=True)
    return sorted(results, key=lambda r: r.student), time.perf_counter() - start, max_scores


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
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel workers (default: cores)")
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
    else:
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
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if args.workers * limits.sandbox_memory > total:
        log.warning("WARNING: %d workers times %g GiB a sandbox exceeds this machine's %.0f GiB of memory: pass "
                    "fewer --workers or a smaller --sandbox-memory-gb", args.workers, sandbox_gb, total / 2**30)
    data_dir = os.environ.get("COURSE_DATA")
    # One sandboxed kernel per worker starts importing torch now, while this process imports nbgrader.
    kernels = KernelPool(args.workers, limits, args.seed, args.unsafe_no_sandbox, data_dir)
    not_graded = []
    try:
        for name in names:
            results, seconds, max_scores = grade_assignment(course, name, args.workers, limits, args.seed,
                                                            args.unsafe_no_sandbox, data_dir, kernels=kernels)
            if not args.no_feedback:
                feedback(course, name, results)
            print(report.write(course, name, results, max_scores, seconds, args.workers, limits))
            not_graded += [f"{name}/{r.student}" for r in results if r.status in NOT_GRADED]
    finally:
        kernels.close()
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
