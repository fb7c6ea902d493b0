"""Sandboxed kernels started before the submissions they will grade (``autograder.sandbox.warm.start_warm``).

A grading kernel spends over a second importing torch before it can run a cell. Started only when
nbgrader asks for it, that second is waited for once per submission; started ahead, it overlaps with work the
grader does anyway: importing nbgrader when the command starts, then each submission's nbgrader preparations.

A pre-started kernel knows nothing of any submission: until the grader hands it a connection file it has run
only the grader's start-up code (``autograder.judge.kernel_boot``), in its own sandbox. Each is used
for one submission and then stopped; none is ever reused.

Light imports only: ``autograder.grade.cli`` starts the pool before importing nbgrader.
"""
from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.sandbox import cgroup, policy
from autograder.sandbox.launcher import LaunchConfig
from autograder.sandbox.warm import start_warm

if TYPE_CHECKING:
    from autograder.sandbox.policy import Limits


class Slot:
    """One pre-started kernel and the folders that belong to it.

    ws: the grader's private folder for its submission (test results, launch config, the scratch course);
    runtime: the connection file's and sockets' folder, bound into the sandbox (a small tmpfs when grading as
    root: ``policy.mount_runtime``); control: the folder of the socket the kernelspec's launcher hands the
    connection file over, which no sandbox sees. cgroup: the sandbox's control group (None where the machine
    has none: ``autograder.sandbox.cgroup``); nbgrader_cgroup: the group the submission's nbgrader process
    joins. Both are named after the runtime folder, unique on the machine, and removed by ``stop``.
    memory_kills, after ``stop``: {"sandbox" / "nbgrader": processes the OOM killer ended at that group's
    limit}.
    """

    def __init__(self, folder: str | Path, limits: Limits, seed: int = 0, unsafe: bool = False,
                 data_dir: str | None = None, font_cache: str | None = None) -> None:
        self.ws = Path(tempfile.mkdtemp(prefix="g-", dir=folder)).resolve()
        # Unix socket paths may not exceed 107 bytes: both socket folders are short ones under /tmp.
        self.runtime = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp")).resolve()
        self.control = Path(tempfile.mkdtemp(prefix="w-", dir="/tmp")).resolve()
        self.runtime_tmpfs = policy.mount_runtime(self.runtime)
        self.cgroup = self.nbgrader_cgroup = None
        self.memory_kills, groups = {}, {}
        # Released by stop, or else when this object goes or the grader exits (an exception that skipped
        # stop).
        self._release = weakref.finalize(self, _release, os.getpid(), groups, self.memory_kills, self.runtime,
                                         self.control)
        try:
            self.cgroup = groups["sandbox"] = cgroup.Group.create(
                f"{cgroup.PREFIX}{self.runtime.name}", memory=limits.sandbox_memory,
                tasks=limits.processes + policy.BWRAP_TASKS)
            self.nbgrader_cgroup = groups["nbgrader"] = cgroup.Group.create(
                f"{cgroup.PREFIX}nb-{self.runtime.name}", memory=policy.NBGRADER_MEMORY)
        except OSError:
            self._release()
            raise
        (self.ws / "work").mkdir()
        self.config = LaunchConfig(asdict(limits), data_dir, seed,
                                   unsafe_no_sandbox=unsafe, runtime_dir=str(self.runtime),
                                   font_cache=font_cache, warm=str(self.control / "kernel"),
                                   workdir=str(self.ws / "work"),
                                   cgroup=[str(f) for f in self.cgroup.folders] if self.cgroup else None,
                                   cgroup_kind=self.cgroup.kind if self.cgroup else None,
                                   nbgrader_cgroup=[str(f) for f in self.nbgrader_cgroup.folders]
                                   if self.nbgrader_cgroup else None)
        self.config_path = self.ws / "launch.json"
        self.config.save(self.config_path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(self.config.warm)
            listener.listen(1)
            self.process = start_warm(self.config_path, listener)

    def stop(self, grace_s: float = 10) -> None:
        """Wait for the kernel's launcher (it exits with its kernel), then kill what is left: a kernel
        nbgrader never asked for, or one whose notebook ran out of time, and anything left in the sandbox's
        group (also when the launcher itself was killed). Removes the groups, the runtime tmpfs and the socket
        folders."""
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self._release()  # once: a second stop finds nothing to do


def _release(owner: int, groups: dict[str, cgroup.Group | None], memory_kills: dict[str, int], runtime: Path,
             control: Path) -> None:
    """What a Slot holds besides its kernel: kill what is left in its groups (counting first what the OOM
    killer ended there) and remove them, unmount and remove the runtime folder, remove the control folder.
    Only in the process that made the Slot (``owner``): a forked child exiting never takes its parent's
    slots."""
    if os.getpid() != owner:
        return
    for name, group in groups.items():
        if group is not None:
            memory_kills[name] = group.oom_kills()
            group.destroy()
    policy.unmount_runtime(runtime)
    shutil.rmtree(runtime, ignore_errors=True)
    shutil.rmtree(control, ignore_errors=True)


class KernelPool:
    """Up to ``size`` kernels pre-started at any time (one per worker), each handed out once by ``take``, and
    ``size`` judges (``judges``: an ``autograder.judge.launch.JudgePool``), each serving one worker's
    submissions in turn.

    ``expect(n)`` says how many more kernels will be taken; the pool never starts more than that, so no kernel
    is started for nothing once the submissions are known. Until then it starts ``size``.
    """

    def __init__(self, size: int, limits: Limits, seed: int = 0, unsafe: bool = False,
                 data_dir: str | None = None) -> None:
        from autograder.judge.launch import JudgePool

        # one judge per worker (autograder.judge.launch), started now as well
        self.judges = JudgePool(size, unsafe)
        self.folder = Path(tempfile.mkdtemp(prefix="grade-kernels-")).resolve()
        font_cache = policy.font_cache(self.folder / "matplotlib")  # each kernel gets a copy (0.2 s, once)
        self.size, self.options = max(1, size), dict(limits=limits, seed=seed, unsafe=unsafe,
                                                     data_dir=data_dir, font_cache=font_cache)
        self._free, self._lock, self._slots = queue.Queue(), threading.Lock(), []
        self._wanted = None  # takes still expected; None: not known yet
        self._fill()

    def _fill(self) -> None:
        with self._lock:
            target = self.size if self._wanted is None else min(self.size, self._wanted)
            while self._free.qsize() < target:
                slot = Slot(self.folder, **self.options)
                self._slots.append(slot)
                self._free.put(slot)

    def expect(self, n: int) -> None:
        """``n`` more kernels will be taken (the submissions of an assignment)."""
        with self._lock:
            self._wanted = (self._wanted or 0) + n
        self._fill()

    def take(self) -> Slot:
        """A pre-started kernel; another is started in its place while more are expected."""
        try:
            slot = self._free.get_nowait()
        except queue.Empty:  # more taken than expected: start one now rather than wait for nothing
            slot = Slot(self.folder, **self.options)
            with self._lock:
                self._slots.append(slot)
        with self._lock:
            if self._wanted is not None:
                self._wanted = max(0, self._wanted - 1)
        self._fill()
        return slot

    def close(self) -> None:
        """Stop every kernel still waiting (and any left running) and remove the pool's folder."""
        for slot in self._slots:
            slot.stop(grace_s=0)  # no wait: kills the process group of any still running
        self.judges.close()
        shutil.rmtree(self.folder, ignore_errors=True)
