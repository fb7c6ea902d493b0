"""Grade a whole class: ``python -m autograder.grade 01_layers`` (or ``--all``) in the course folder.

For each assignment: every ``submitted/<student>/<assignment>/`` is checked (``autograder.grade.intake``),
graded in parallel workers (``autograder.grade.worker``; kernels sandboxed by ``autograder.sandbox``), written
into the gradebook by this process alone, then nbgrader's own ``generate_feedback`` runs, the gradebook is
checked and exported to CSV (``grades.csv``), and a report is written to ``reports/<assignment>/``.

Kernels are started ahead of the submissions (``autograder.grade.kernels``), one per worker, right after the
sandbox is checked and before nbgrader is imported here. Refuses to grade when the sandbox cannot start,
unless ``--unsafe-no-sandbox`` is given (logged loudly).

Two backends grade with the same function (``autograder.grade.worker.grade_one``): ``LocalRunner`` (threads on
this machine, the default) and ``--backend dask`` (``autograder.grade.dask_backend``: the workers of a Dask
cluster). A submission graded before and unchanged since keeps its grade unless ``--force``
(``autograder.grade.ledger``).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path

from autograder.grade import report
from autograder.grade.dask_backend import CLUSTERS
from autograder.grade.kernels import KernelPool
from autograder.grade.nbgrader_server import start_nbgrader_server
from autograder.grade.run import (
    EXIT_SOME_NOT_GRADED,
    NOT_GRADED,
    LocalRunner,
    export,
    feedback,
    grade_assignment,
)
from autograder.sandbox.policy import Limits, SandboxUnavailable, check_available, limits_in_force

log = logging.getLogger("autograder.grade")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m autograder.grade", description=__doc__.split("\n")[0],
        epilog=f"Exit status: 0 when every submission was graded, {EXIT_SOME_NOT_GRADED} when some were not "
               "(rejected or failed: the report lists each with its reason; the others are graded and "
               "exported), 1 on errors.")
    parser.add_argument("assignments", nargs="*", help="assignment names, e.g. 01_layers")
    parser.add_argument("--all", action="store_true", help="every assignment in source/")
    parser.add_argument("--course", default=".",
                        help="the course folder (holds nbgrader_config.py); default: here")
    parser.add_argument("--workers", type=int, default=None,
                        help="parallel workers (default: this machine's cores); with --backend dask, the "
                             "workers of a cluster made here (--cluster, or a LocalCluster when no scheduler "
                             "is configured)")
    parser.add_argument("--backend", choices=("local", "dask"), default="local",
                        help="local: this machine (default); dask: the workers of a Dask cluster (README: "
                             "'Grading on a cluster')")
    parser.add_argument("--scheduler",
                        help="with --backend dask: the scheduler's address, e.g. tcp://10.0.0.5:8786 "
                             "(default: Dask's configured scheduler-address, else a cluster made here)")
    parser.add_argument("--cluster", choices=list(CLUSTERS),
                        help="with --backend dask and no --scheduler: make this kind of cluster, configured "
                             "by Dask's own configuration (dask-jobqueue, dask-kubernetes, dask-gateway)")
    parser.add_argument("--worker-timeout", type=float, default=120,
                        help="with --backend dask: seconds to wait for the first worker (default 120)")
    parser.add_argument("--max-submission-mb", type=float, default=16,
                        help="with --backend dask: the largest notebook a task carries to a worker "
                             "(default 16)")
    parser.add_argument("--force", action="store_true",
                        help="grade every submission again, also those graded before and unchanged since")
    parser.add_argument("--cell-timeout", type=int, default=Limits.cell_s, help="seconds per cell")
    parser.add_argument("--notebook-timeout", type=int, default=Limits.notebook_s,
                        help="seconds per notebook")
    parser.add_argument("--memory-gb", type=float, default=Limits.memory / 2**30,
                        help="address space per process")
    parser.add_argument("--sandbox-memory-gb", type=float, default=None,
                        help="memory of a sandbox's processes together, where a cgroup can hold them "
                             "(default: --memory-gb plus 2, so that one process meets its own limit first)")
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
        from autograder.publish.layout import assignments

        names = assignments(course)
    if not names:
        parser.error("name at least one assignment, or pass --all")
    start_nbgrader_server()  # already running when run as a command; imports nbgrader in its own process
    threading.Thread(target=report.preload, daemon=True).start()  # matplotlib, imported while kernels run
    if args.unsafe_no_sandbox:
        log.warning("WARNING: --unsafe-no-sandbox: student code runs with YOUR rights, network and files. "
                    "Resource limits still apply, and tests still run in the judge.")
    elif args.backend == "local":
        # a Dask worker checks its own sandbox (autograder.grade.dask_backend.check_worker)
        try:
            check_available()
        except SandboxUnavailable as err:
            sys.exit(f"error: {err}")
    sandbox_gb = args.sandbox_memory_gb if args.sandbox_memory_gb is not None else args.memory_gb + 2
    if sandbox_gb <= args.memory_gb:
        parser.error("--sandbox-memory-gb must exceed --memory-gb: a single process should get a MemoryError "
                     "before the whole sandbox is stopped")
    limits = Limits(cell_s=args.cell_timeout, notebook_s=args.notebook_timeout,
                    memory=int(args.memory_gb * 2**30), sandbox_memory=int(sandbox_gb * 2**30))
    log.info("limits: %s", limits_in_force(limits))
    data_dir = os.environ.get("COURSE_DATA")
    if args.backend == "local":
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if args.workers * limits.sandbox_memory > total:
            log.warning("WARNING: %d workers times %g GiB a sandbox exceeds this machine's %.0f GiB of "
                        "memory: pass fewer --workers or a smaller --sandbox-memory-gb", args.workers,
                        sandbox_gb, total / 2**30)
        # One sandboxed kernel per worker starts importing torch now, while this process imports nbgrader.
        kernels = KernelPool(args.workers, limits, args.seed, args.unsafe_no_sandbox, data_dir)
        runner, close = LocalRunner(kernels, args.workers), kernels.close
    else:
        from autograder.grade import dask_backend  # imports Dask only now

        client, cluster = dask_backend.connect(args.scheduler, args.cluster,
                                               args.workers if args.workers_given else None)

        def disconnect() -> None:
            client.close()
            if cluster is not None:
                cluster.close()
        try:
            runner = dask_backend.DaskRunner(client, args.worker_timeout, args.unsafe_no_sandbox,
                                             int(args.max_submission_mb * 2**20))
        except BaseException:
            disconnect()
            raise

        def close() -> None:
            runner.close()
            disconnect()
    not_graded = []
    try:
        for name in names:
            results, seconds, max_scores, reused = grade_assignment(
                course, name, runner, limits, args.seed, args.unsafe_no_sandbox, data_dir, force=args.force)
            if reused:
                log.info("%s: %d submissions graded before and unchanged since were not graded again "
                         "(--force grades them again)", name, reused)
            if not args.no_feedback:
                feedback(course, name, results)
            print(report.write(course, name, results, max_scores, seconds, runner.workers, limits,
                               backend=runner.name, reused=reused))
            not_graded += [f"{name}/{r.student}" for r in results if r.status in NOT_GRADED]
    finally:
        close()
    if not args.no_export:
        from autograder.grade.gradebook_io import ExportRefused

        try:
            print(f"grades exported to {export(course)}")
        except (ExportRefused, RuntimeError) as err:
            sys.exit(f"error: {err}")
    if not_graded:
        print(f"{len(not_graded)} submissions were not graded (the report says why): "
              f"{', '.join(not_graded[:20])}", file=sys.stderr)
        sys.exit(EXIT_SOME_NOT_GRADED)
