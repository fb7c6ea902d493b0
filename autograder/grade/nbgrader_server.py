"""nbgrader, run from a warm fork server: ``nbgrader autograde`` and ``generate_feedback`` start in
milliseconds instead of paying nbgrader's ~2 s of imports for each submission. The fork server preloads
``autograder.grade.nbgrader_preload``.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.publish.layout import nbgrader_env

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from multiprocessing.context import ForkServerContext

    # named, not imported: importing it here would spend in this process the ~1.3 s of imports that the fork
    # server exists to spend elsewhere
    from autograder.grade import nbgrader_preload  # noqa: F401

PRELOAD = ["autograder.grade.nbgrader_preload"]  # what the fork server imports (tests/ check each imports)
_forkserver = None


def _nbgrader_context() -> ForkServerContext:
    """A multiprocessing context whose fork server has nbgrader imported once, so that each submission's
    ``nbgrader autograde`` starts in milliseconds instead of paying its ~2 s of imports again."""
    global _forkserver
    if _forkserver is None:
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _forkserver = ctx
    return _forkserver


def start_nbgrader_server() -> None:
    """Start the fork server now (it imports nbgrader in the background), so the first submission need not
    wait."""
    from multiprocessing import forkserver

    _nbgrader_context()
    forkserver.ensure_running()


def _nbgrader_main(args: list[str], cwd: str, env: dict[str, str], out_path: str,
                   cgroup: Sequence[str | Path] = ()) -> None:
    """Child of the fork server: ``nbgrader ARGS`` in ``cwd`` with environment ``env``, output to
    ``out_path``, in a new session so that the parent can kill it and its kernel together, in control group
    ``cgroup`` (its folders; ``autograder.grade.kernels.Slot.nbgrader_cgroup``) when given."""
    if cgroup:
        from autograder.sandbox.cgroup import join

        join(cgroup)
    os.setsid()
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["nbgrader", *args]
    import resource

    from nbgrader.apps.nbgraderapp import NbGraderApp

    try:
        NbGraderApp.launch_instance(argv=list(args))
    finally:  # the trusted process's own high-water mark, for the log (what a submission's output cost it)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"[grader] nbgrader peak RSS: {peak} MiB", flush=True)


def run_nbgrader(args: Iterable[str], cwd: str | Path, env: Mapping[str, str] | None = None,
                 timeout: float | None = None, cgroup: Iterable[str | Path] = ()) -> tuple[int, str, bool]:
    """Run ``nbgrader ARGS`` in ``cwd`` with ``env`` (default: this process's; PATH as ``nbgrader_env`` sets
    it), forked from the warm fork server, killed with its children after ``timeout`` seconds (None: no
    limit), in the control group made of folders ``cgroup`` (none: the fork server's). Returns (exit code,
    output, timed_out)."""
    env = nbgrader_env(env)
    out = Path(tempfile.mkstemp(prefix="nbgrader-", suffix=".log")[1])
    try:
        proc = _nbgrader_context().Process(target=_nbgrader_main,
                                           args=(list(args), str(cwd), dict(env), str(out), list(cgroup)))
        proc.start()
        proc.join(timeout)
        timed_out = proc.exitcode is None
        if timed_out:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.join()
        return proc.exitcode, out.read_text(errors="replace"), timed_out
    finally:
        out.unlink(missing_ok=True)
