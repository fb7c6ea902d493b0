"""Benchmark: the class grader against plain nbgrader, side by side in one run; prints figures.

1. One submission of ASSIGNMENT: `python -m autograder.grade` with one worker (sandbox, judge, intake,
   gradebook merge, no feedback/export) against plain `nbgrader autograde --student` of the same notebook.
   Target: at most 1.1x plain nbgrader's time. With ``--baseline DIR`` (a checkout of an earlier grader, e.g.
   ``git worktree add /tmp/base 3097ec5``), that grader is timed in the same run too: the judge's target is at
   most 1.2x the grader before it.
2. A class of N generated submissions (correct, wrong, a kernel that dies, in turn): the grader with
   --workers W against plain serial `nbgrader autograde` of the whole class. Target: at least 1.8x the
   throughput on 2 cores.

3. With ``--backend dask``, instead: the same class graded by the local backend and on a Dask cluster started
   here on 127.0.0.1 (a scheduler and W single-threaded worker processes:
   ``tests.support.servers.DaskCluster``), in one run. Target: the Dask backend's throughput within 10 % of
   the local backend's. Printed: the time each backend spends per submission beyond grading it (wall x
   workers - the submissions' own grading seconds, over N: scheduling, transfers, idle workers); the
   cluster's cost per submission in worker-seconds at 1, 2 and 4 workers (``--scaling``), and from it the wall
   time for 10,000 submissions on N workers (linear while the machine has a core per worker).

Usage: python -m benchmarks.grading [--assignment 01_layers] [--class-size 40] [--workers 2] [--repeats 3]
       [--baseline DIR] [--backend dask [--scaling 1 2 4]]
"""
import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder.publish.layout import ROOT
from tests.support.grading import Case, add_students, build_submission, new_course


def make_class(course, assignment, size):
    """Write `size` submissions: the solution, the blank release and a dying kernel, in turn."""
    kinds = [Case("s", "solution"), Case("b", "blank", blank=True)]
    students = []
    for i in range(size):
        case = kinds[i % 2]
        nb = build_submission(case, assignment)
        if i % 5 == 4:  # every fifth kernel dies in its first code cell
            first = next(c for c in nb.cells if c.cell_type == "code")
            first.source = "import os\nos._exit(1)\n" + first.source
        folder = Path(course) / "submitted" / f"student{i:03d}" / assignment
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{assignment}.ipynb")
        students.append(f"student{i:03d}")
    return students


def timed(cmd, cwd, check=True):
    """Seconds ``cmd`` took. Plain nbgrader exits non-zero when a kernel dies, so it is run with
    check=False."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    return seconds


def grader_cmd(course, assignment, workers, *extra):
    return [sys.executable, "-m", "autograder.grade", assignment, "--course", str(course),
            "--workers", str(workers), "--no-feedback", "--no-export", *extra]


def grading_seconds(course, assignment):
    """Sum of the submissions' own grading seconds (Result.seconds) in the course's last report."""
    results = json.loads((Path(course) / "reports" / assignment / "results.json").read_text())
    return sum(r["seconds"] for r in results)


def dask_comparison(tmp, assignment, size, workers, scaling):
    """Section 3: returns {"local": s, "dask": {n_workers: s}}; prints the figures."""
    from tests.support.servers import DaskCluster

    figures = {"dask": {}}
    course = new_course(tmp / "local", assignment)
    add_students(course, make_class(course, assignment, size))
    figures["local"] = timed(grader_cmd(course, assignment, workers), ROOT)
    local_over = (figures["local"] * workers - grading_seconds(course, assignment)) / size
    print(f"3. class of {size}, local backend, {workers} workers: {figures['local']:.0f} s "
          f"({size / figures['local'] * 60:.1f}/min); beyond grading: {local_over:.2f} s per submission")
    for n in sorted({workers, *scaling}):
        cluster = DaskCluster(tmp / f"dask{n}")
        try:
            for i in range(n):
                cluster.add_worker(f"w{i}")
            with cluster.client() as client:
                client.wait_for_workers(n, timeout=180)
            course = new_course(tmp / f"dask{n}" / "course", assignment)
            add_students(course, make_class(course, assignment, size))
            seconds = timed(grader_cmd(course, assignment, n, "--backend", "dask",
                                       "--scheduler", cluster.address), ROOT)
        finally:
            cluster.close()
        figures["dask"][n] = seconds
        over = (seconds * n - grading_seconds(course, assignment)) / size
        cost = seconds * n / size  # worker-seconds per submission
        print(f"   dask backend, {n} workers: {seconds:.0f} s ({size / seconds * 60:.1f}/min); "
              f"beyond grading: {over:.2f} s per submission; {cost:.2f} worker-s per submission "
              f"-> 10,000 submissions on {n} workers: {10000 * cost / n / 3600:.1f} h")
    d = figures["dask"][workers]
    print(f"   at {workers} workers the dask backend has {figures['local'] / d:.2f}x "
          f"the local backend's throughput (target >= 0.90x); "
          f"Dask's own cost per submission: {(d - figures['local']) * workers / size:+.2f} s")
    if len(figures["dask"]) > 1:
        one = figures["dask"][min(figures["dask"])] * min(figures["dask"])
        print("   scaling (speed-up over 1 worker, linear = n): " + ", ".join(
            f"{n}: {one / s / min(figures['dask']):.2f}x" for n, s in sorted(figures["dask"].items())))
    return figures


def plain_cmd(assignment, student=None):
    return [sys.executable, "-m", "nbgrader", "autograde", assignment, "--force"] + (
        ["--student", student] if student else [])


def main(argv=None):
    """Run both comparisons; returns {"one": (plain s, grader s), "class": (plain s, grader s)}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assignment", default="01_layers")
    parser.add_argument("--class-size", type=int, default=40, help="0: time one submission only")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path,
                        help="a checkout of an earlier grader, timed beside this one")
    parser.add_argument("--backend", choices=("local", "dask"), default="local",
                        help="dask: section 3 only (the Dask backend against the local one)")
    parser.add_argument("--scaling", type=int, nargs="*", default=[1, 2, 4],
                        help="with --backend dask: the numbers of workers to time the cluster with")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        if args.backend == "dask":
            return dask_comparison(tmp, args.assignment, args.class_size, args.workers, args.scaling)
        one = new_course(tmp / "one", args.assignment)
        make_class(one, args.assignment, 1)
        add_students(one, ["student000"])
        ours, plain, base = [], [], []
        for _ in range(args.repeats):  # interleaved, so all see the same machine state
            plain.append(timed(plain_cmd(args.assignment, "student000"), one, check=False))
            ours.append(timed(grader_cmd(one, args.assignment, 1), ROOT))
            if args.baseline:
                base.append(timed(grader_cmd(one, args.assignment, 1), args.baseline))
        p, o = statistics.median(plain), statistics.median(ours)
        figures = {"one": (p, o)}
        print(f"1. one submission of {args.assignment} (median of {args.repeats}): plain nbgrader {p:.1f} s, "
              f"sandboxed grader {o:.1f} s: {o / p:.2f}x plain (target <= 1.1x)")
        if base:
            b = statistics.median(base)
            figures["baseline"] = b
            print(f"   the grader at {args.baseline}: {b:.1f} s: "
                  f"this one takes {o / b:.2f}x its time (target <= 1.2x)")
        if args.class_size < 1:
            return figures
        whole = new_course(tmp / "class", args.assignment)
        students = make_class(whole, args.assignment, args.class_size)
        add_students(whole, students)
        p = timed(plain_cmd(args.assignment), whole, check=False)
        o = timed(grader_cmd(whole, args.assignment, args.workers), ROOT)
        n = args.class_size
        print(f"2. class of {n} ({args.workers} workers): "
              f"plain serial nbgrader {p:.0f} s ({n / p * 60:.1f}/min), grader {o:.0f} s "
              f"({n / o * 60:.1f}/min): {p / o:.2f}x the throughput (target >= 1.8x)")
        figures["class"] = (p, o)
        return figures
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
