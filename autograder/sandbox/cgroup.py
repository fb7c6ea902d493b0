"""Memory and task limits for a whole sandbox (all its processes together), with Linux control groups.

Per-process limits (``autograder.sandbox.launcher._set_limits``: RLIMIT_AS, RLIMIT_NPROC) do not bound what a
sandbox holds in all: a kernel that forks children, each under its address-space limit, can together take most
of the machine. A control group does: the kernel counts every page (and every task) of every process in it,
and at the limit the OOM killer ends the largest process *in the group*, never one outside it.

What is used, found once per process (``support``):

1. cgroup v2, when the grader's own cgroup offers the ``memory`` and ``pids`` controllers to its children (a
   systemd-delegated cgroup, a container's own hierarchy, or the root), or else, where it holds processes
   itself (v2 lets only leaves do that) and this process may write its parent (root), beside it;
2. otherwise cgroup v1 (the hybrid layout of many hosts and CI machines: v1 ``memory`` and ``pids``
   hierarchies beside a v2 mount with no controllers), writable by root;
3. otherwise nothing here: only the per-process limits apply (``autograder.sandbox``), and the report says so.

Each sandbox gets its own group under the grader's own cgroup (v1: one in each hierarchy), named after the
kernel's slot (``autograder.grade.kernels.Slot``) so that whoever knows the slot can remove it, even after the
process that started the kernel was killed. The kernel joins it before ``exec`` (``join`` in a
``preexec_fn``), so that bubblewrap and everything it starts are counted; ``destroy`` kills what is left in it
and removes it.

Light imports only: ``autograder.grade.cli`` starts kernels before importing nbgrader.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the kernel's launcher stays light
if TYPE_CHECKING:
    from collections.abc import Iterable

    # a cgroup file system: (mount point, fstype, super options, root of the mount within its hierarchy)
    _Mount = tuple[Path, str, set[str], str]

PREFIX = "grader-"


@dataclass(frozen=True)
class Support:
    """What this machine allows. kind: "v2", "v1" or "" (none); bases: {controller: folder under which groups
    are made} ("memory" and/or "pids"; the same folder for both with v2); memsw: v1 also limits memory plus
    swap; why: for each kind not used, why (shown in the report)."""

    kind: str
    bases: dict[str, Path] = field(default_factory=dict)
    memsw: bool = False
    why: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"cgroup {self.kind}" if self.kind else "no cgroup (" + "; ".join(self.why) + ")"


def _cgroup_mounts() -> list[_Mount]:
    """[(mount point, fstype, super options, root of the mount within its hierarchy)] of cgroup file
    systems."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, opts = fields[sep + 1], set(fields[sep + 3].split(","))
        if fstype in ("cgroup", "cgroup2"):
            out.append((Path(fields[4]), fstype, opts, fields[3]))
    return out


def _own_cgroups() -> dict[str, str]:
    """{controller: this process's cgroup path}; "" is the v2 (unified) hierarchy."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            own[name] = path
    return own


def _under(mount: Path, root: str, path: str) -> Path | None:
    """The folder of cgroup ``path`` in a hierarchy mounted at ``mount`` (whose own root is ``root``)."""
    root = root.rstrip("/")
    if root and not (path == root or path.startswith(root + "/")):
        return None
    return mount / path[len(root):].lstrip("/")


def _probe(folder: str | os.PathLike, files: Iterable[str] = ()) -> str | None:
    """Can a child group with ``files`` (its controllers' limits) be made (and removed) in ``folder``? Returns
    None, or why not."""
    probe = Path(folder) / f"{PREFIX}probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as err:
        return f"cannot make a group in {folder} ({err.strerror})"
    try:
        missing = [name for name in files if not (probe / name).exists()]
        return f"groups in {folder} get no {', '.join(missing)}" if missing else None
    finally:
        probe.rmdir()


def _detect_v2(mounts: list[_Mount], own: dict[str, str]) -> tuple[Support | None, str | None]:
    if "" not in own:
        return None, "cgroup v2: this process is in no v2 hierarchy"
    for mount, fstype, _, root in mounts:
        if fstype != "cgroup2":
            continue
        base = _under(mount, root, own[""])
        if base is None or not (base / "cgroup.controllers").exists():
            continue
        offered = set((base / "cgroup.controllers").read_text().split())
        if not {"memory", "pids"} <= offered:
            return None, f"cgroup v2: no memory and pids controllers at {base}"
        enabled = set((base / "cgroup.subtree_control").read_text().split())
        if not {"memory", "pids"} <= enabled:
            # fails (EBUSY) where processes live in this group itself: v2 lets only leaves hold processes
            try:
                (base / "cgroup.subtree_control").write_text("+memory +pids")
            except OSError as err:
                # The grader's own group is a leaf with processes (a login session's scope, a service). Its
                # parent gives the controllers to its children (this group has them): the sandboxes' groups
                # can be made beside it there, where this process may write (root; a delegated parent).
                busy = f"cannot enable memory and pids under {base} ({err.strerror})"
                beside = base.parent
                why = _probe(beside, ("memory.max", "pids.max")) if beside != mount.parent else "no parent"
                if why:
                    return None, (f"cgroup v2: {busy}, and beside it: {why}; run the grader in a delegated "
                                  "cgroup (systemd-run --scope -p Delegate=yes ...)")
                return Support("v2", {"memory": beside, "pids": beside}), None
        why = _probe(base, ("memory.max", "pids.max"))
        return (None, "cgroup v2: " + why) if why else (Support("v2", {"memory": base, "pids": base}), None)
    return None, "cgroup v2: not mounted"


def _detect_v1(mounts: list[_Mount], own: dict[str, str]) -> tuple[Support | None, str | None]:
    bases, why = {}, []
    for controller in ("memory", "pids"):
        for mount, fstype, opts, root in mounts:
            if fstype == "cgroup" and controller in opts and controller in own:
                base = _under(mount, root, own[controller])
                if base is not None and base.is_dir():
                    problem = _probe(base, ("memory.limit_in_bytes",) if controller == "memory"
                                     else ("pids.max",))
                    if problem is None:
                        bases[controller] = base
                    else:
                        why.append(problem)
                    break
        else:
            why.append(f"no v1 {controller} hierarchy")
    if "memory" not in bases:  # the task limit alone is what RLIMIT_NPROC gives already
        return None, "cgroup v1: " + "; ".join(why)
    return Support("v1", bases, (bases["memory"] / "memory.memsw.limit_in_bytes").exists()), None


_support = None


def support() -> Support:
    """What this machine allows (Support), found once per process: v2, else v1, else none."""
    global _support
    if _support is None:
        try:
            mounts, own = _cgroup_mounts(), _own_cgroups()
        except OSError as err:
            _support = Support("", why=(f"cannot read this process's cgroups ({err.strerror})",))
            return _support
        reasons = []
        for detect in (_detect_v2, _detect_v1):
            found, why = detect(mounts, own)
            if found is not None:
                _support = Support(found.kind, found.bases, found.memsw, tuple(reasons))
                return _support
            reasons.append(why)
        _support = Support("", why=tuple(reasons))
    return _support


class Group:
    """One sandbox's control group: a folder per hierarchy (one with v2; memory and pids with v1).

    Made by ``create``; rebuilt from its folders (``Group(kind, folders)``) where only those are known, as in
    the launcher that joins it.
    """

    def __init__(self, kind: str, folders: Iterable[str | os.PathLike]) -> None:
        self.kind, self.folders = kind, [Path(f) for f in folders]

    @classmethod
    def create(cls, name: str, memory: int | None = None, tasks: int | None = None,
               found: Support | None = None) -> Group | None:
        """Make group ``name`` with at most ``memory`` bytes (None: no limit of its own) and ``tasks`` tasks
        (None: no limit), under this process's own cgroup. Returns the Group, or None where cgroups are not
        usable (``support().why`` says why). Raises OSError where making it fails although the probe
        worked."""
        found = found or support()
        if not found.kind:
            return None
        wanted = {"memory": memory, "pids": tasks}
        folders = {}
        for controller, base in found.bases.items():
            if wanted[controller] is not None or controller == "memory":
                folders.setdefault(base / name, set()).add(controller)
        group = cls(found.kind, list(folders))
        try:
            for folder, controllers in folders.items():
                folder.mkdir()
                if memory is not None and "memory" in controllers:
                    if found.kind == "v2":
                        _write(folder / "memory.max", memory)
                        if (folder / "memory.swap.max").exists():
                            _write(folder / "memory.swap.max", 0)
                    else:
                        _write(folder / "memory.limit_in_bytes", memory)
                        if found.memsw:  # memory plus swap: no escaping the limit into swap
                            _write(folder / "memory.memsw.limit_in_bytes", memory)
                if tasks is not None and "pids" in controllers:
                    _write(folder / "pids.max", tasks)
        except OSError:
            group.destroy(timeout=2)
            raise
        return group

    def procs(self) -> set[int]:
        """The ids of the processes in the group now."""
        pids = set()
        for folder in self.folders:
            try:
                pids.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
        return pids

    def oom_kills(self) -> int:
        """How many processes of the group the OOM killer ended because the group reached its memory limit."""
        name = "memory.events" if self.kind == "v2" else "memory.oom_control"
        for folder in self.folders:
            try:
                for line in (folder / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
            except (FileNotFoundError, ValueError):
                continue
        return 0

    def memory_peak(self) -> int | None:
        """The group's highest memory use in bytes (None where the kernel does not keep it)."""
        name = "memory.peak" if self.kind == "v2" else "memory.max_usage_in_bytes"
        for folder in self.folders:
            try:
                return int((folder / name).read_text())
            except (FileNotFoundError, ValueError):
                continue
        return None

    def destroy(self, timeout: float = 10) -> bool:
        """Kill every process left in the group and remove it; returns True when every folder is gone."""
        deadline = time.monotonic() + timeout
        for folder in self.folders:
            if self.kind == "v2" and (folder / "cgroup.kill").exists():
                _write(folder / "cgroup.kill", 1)  # Linux 5.14: the whole group at once, no race with fork
        while True:
            pids = self.procs()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            gone = True
            for folder in self.folders:
                try:
                    folder.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as err:
                    if err.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                        raise
                    gone = False  # processes still exiting (or children made meanwhile): kill and try again
            if gone or time.monotonic() > deadline:
                return gone
            time.sleep(0.02)


def join(folders: Iterable[str | os.PathLike], pid: int = 0) -> None:
    """Move process ``pid`` (0: the caller) into the group made of ``folders``: a ``preexec_fn`` calls this in
    the kernel's process before bubblewrap starts, so that every process of the sandbox is in the group."""
    for folder in folders:
        _write(Path(folder) / "cgroup.procs", pid or os.getpid())


def _write(path: str | os.PathLike, value: int) -> None:
    with open(path, "w") as f:
        f.write(str(value))
