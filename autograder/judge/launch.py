"""The judges of a grading run: one sandboxed ``autograder.judge.process`` process per worker, started once.

A judge imports torch once (about a second) and then serves its worker's submissions one after another, a
fresh namespace per test. It never runs student code, but it decodes what student code sends, so it runs in
the same bubblewrap sandbox as the kernels (``autograder.sandbox.policy.bwrap_argv``): no network, no course
files besides the ``course`` and ``autograder`` packages, nothing of the gradebook or of any submission, a
private tmpfs as its working folder, its own memory limit. Its socket lives in a folder only the grader and
the judge see.

``JudgePool.take()`` gives a judge for one submission (a new one if the last died) and ``give(judge)`` returns
it.
"""
from __future__ import annotations

import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.judge import process
from autograder.sandbox import policy

JUDGE_MEMORY = 8 * 1024**3  # bytes of address space, as a kernel gets (torch reserves much more than it uses)


class Judge:
    """One judge process and its socket."""

    def __init__(self, unsafe: bool = False) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="j-", dir="/tmp")).resolve()
        self.socket = str(self.folder / "judge.sock")
        work = self.folder / "work"
        work.mkdir()
        cmd = [sys.executable, "-m", process.__name__, self.socket]
        env = policy.sandbox_env(work, extra={"HOME": str(work)})
        if unsafe:
            argv, popen_env = cmd, dict(os.environ, **env)
        else:
            argv = policy.bwrap_argv(work, self.folder) + policy.setenv_args(env) + cmd
            popen_env = None

        def limits() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (JUDGE_MEMORY, JUDGE_MEMORY))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        self.process = subprocess.Popen(argv, env=popen_env, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, preexec_fn=limits, start_new_session=True)
        self._ready = False

    def wait_ready(self, timeout: float = 120) -> None:
        """Block until the judge listens (it prints "ready" once its socket listens, before it imports torch);
        raises RuntimeError past ``timeout`` seconds or when it exits first."""
        if self._ready:
            return
        deadline, fd, line = time.monotonic() + timeout, self.process.stdout.fileno(), b""
        while not line.endswith(b"\n"):  # the judge writes one line, then nothing more to stdout
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError(f"the judge did not start within {timeout:g} s")
            chunk = os.read(fd, 64)
            if not chunk:
                break
            line += chunk
        if line.strip() != b"ready":
            raise RuntimeError(f"the judge did not start (exit code {self.process.poll()})")
        self._ready = True

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 9)
            except ProcessLookupError:
                pass
        self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class JudgePool:
    """``size`` judges, started now (in the background: they import torch while the grader does other
    work)."""

    def __init__(self, size: int, unsafe: bool = False) -> None:
        self.unsafe = unsafe
        self._free = queue.Queue()
        self._all = []
        for _ in range(max(1, size)):
            self._start()

    def _start(self) -> None:
        judge = Judge(self.unsafe)
        self._all.append(judge)
        self._free.put(judge)

    def take(self) -> Judge:
        """A judge that is alive and listening, for one submission."""
        judge = self._free.get()
        if not judge.alive():
            judge.close()
            judge = Judge(self.unsafe)
            self._all.append(judge)
        judge.wait_ready()
        return judge

    def give(self, judge: Judge) -> None:
        self._free.put(judge)

    def close(self) -> None:
        for judge in self._all:
            judge.close()
