"""Run a notebook the way the class grader does, without nbgrader or a sandbox: its cells in a plain Python
process that serves the judge's requests (``autograder.judge.kernel_server``), its test cells in
``autograder.judge.process``.

Fast enough to try every fixture case of every assignment against the judge (``tests/grader/test_judge.py``),
and to see the judge's own failures in plain tracebacks. ``python -m tests.support.judge_harness 01_layers
[case ...]`` prints each case's scores.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.judge.judged_execute import source_preambles
from autograder.judge.process import Judge
from autograder.publish.layout import ROOT
from course.cells import is_test_cell as is_test

CELL_RUNNER = r'''
import json, os, sys, traceback, contextlib, io
sys.path.insert(0, os.environ["ROOT"])
import matplotlib
matplotlib.use("Agg")
from autograder.judge import kernel_server
NS = {"__name__": "__main__"}
sys.modules["__main__"].__dict__.update(NS)
NS = sys.modules["__main__"].__dict__
kernel_server.start(sys.argv[1], ns=lambda: NS)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    source = json.loads(line)
    buf = io.StringIO()
    ok = True
    try:
        with contextlib.redirect_stdout(buf):
            exec(compile(source, "<cell>", "exec"), NS)
    except BaseException as err:
        ok = False
        buf.write(traceback.format_exc())
    print(json.dumps({"ok": ok, "out": buf.getvalue()[-2000:]}), flush=True)
'''


class PlainKernel:
    """A Python process that runs cells sent to it and serves the judge on ``folder/judge.sock``."""

    def __init__(self, cwd=None):
        self.folder = tempfile.mkdtemp(prefix="jk-", dir="/tmp")
        env = dict(os.environ, ROOT=str(ROOT), NBGRADER_EXECUTION="autograde", MPLBACKEND="Agg",
                   PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-c", CELL_RUNNER, self.folder], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=cwd or self.folder)
        json.loads(self.proc.stdout.readline())
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(os.path.join(self.folder, "judge.sock"))

    def run(self, source):
        self.proc.stdin.write(json.dumps(source) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            return {"ok": False, "out": "the kernel died"}
        return json.loads(line)

    def close(self):
        self.sock.close()
        self.proc.kill()
        self.proc.wait()


def grade(nb, assignment, seconds=120, verbose=False):
    """{grade_id: (passed, why)} for every test cell of notebook ``nb`` (a NotebookNode), with the sources of
    the source notebook's tests (as the grader sends the gradebook's)."""
    import nbformat

    path = Path(ROOT) / "source" / assignment / f"{assignment}.ipynb"
    source = nbformat.read(path, as_version=4)
    tests = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells if is_test(c)}
    preambles = source_preambles(path, tests)
    kernel = PlainKernel()
    judge = Judge(kernel.sock)
    results = {}
    try:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if is_test(cell) and gid in tests:
                t0 = time.perf_counter()
                r = judge.run_test(gid, tests[gid], seconds, preambles[gid])
                results[gid] = (r["passed"], "" if r["passed"] else "\n".join(r["traceback"]))
                if verbose:
                    print(f"  {gid}: {'pass' if r['passed'] else 'FAIL'} ({time.perf_counter() - t0:.2f} s)"
                          + ("" if r["passed"] else "\n    " + "\n    ".join(r["traceback"][-6:])))
            else:
                out = kernel.run(cell.source)
                if verbose and not out["ok"]:
                    print(f"  cell error: {out['out'][-800:]}")
        for gid in tests:  # deleted by the student: nbgrader puts them back (here: at the end)
            if gid not in results:
                r = judge.run_test(gid, tests[gid], seconds, preambles[gid])
                results[gid] = (r["passed"], "" if r["passed"] else "\n".join(r["traceback"]))
    finally:
        kernel.close()
    return results


def main(argv=None):
    import importlib

    from tests.support.grading import build_submission

    args = argv or sys.argv[1:]
    assignment, wanted = args[0], set(args[1:])
    mod = importlib.import_module(f"tests.fixtures.submissions.a{assignment}")
    for case in mod.CASES:
        if wanted and case.student not in wanted:
            continue
        print(f"== {case.student}")
        nb = build_submission(case, assignment)
        res = grade(nb, assignment, verbose=True)
        want = case.expected({gid: 1.0 for gid in res})
        for gid, (passed, _) in res.items():
            if passed != (want[gid] > 0):
                print(f"  MISMATCH {gid}: judge {'passed' if passed else 'failed'}, "
                      f"expected score {want[gid]}")


if __name__ == "__main__":
    main()
