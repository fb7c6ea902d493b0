"""What a sandboxed kernel may see and use: bubblewrap's arguments, its environment, the resource limits
(``Limits``), the runtime tmpfs, and whether the sandbox can start here (``check_available``). The wiring is
in this package's docstring."""
from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autograder.publish.layout import ROOT
from autograder.sandbox import cgroup

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the kernel's launcher stays light
if TYPE_CHECKING:
    from collections.abc import Sequence

KERNEL_NAME = "course-sandbox"
CONFIG_ENV = "GRADER_SANDBOX_CONFIG"
MiB = 1024 * 1024
GiB = 1024 * MiB
PRIVATE_UID_BASE = 200_000  # uids no account uses: one per sandboxed kernel when grading as root
# The runtime folder holds the connection file (about 300 bytes) and five Unix sockets (no data on disk):
# 16 MiB and 256 files is ample, and all a kernel that writes there can take (the folder is bound read-write).
RUNTIME_SIZE = 16 * MiB
RUNTIME_FILES = 256
# bubblewrap's own tasks in the sandbox's group (its monitor and the PID namespace's init), beside the
# kernel's.
BWRAP_TASKS = 4
# The memory of the forked nbgrader process that runs one submission (autograder.grade.nbgrader_server): about
# 100 MiB for 01_layers; what a submission's output can add is bounded by JudgedExecute's caps, except a
# ZeroMQ message split in many parts (each part is bounded, their number is not), which this limit catches.
NBGRADER_MEMORY = 1 * GiB


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here; grading refuses rather than run unsandboxed."""


@dataclass
class Limits:
    """What one submission may use. Times in seconds, sizes in bytes.

    cell_s: wall time per cell (nbgrader's Execute.timeout); notebook_s: wall time for the whole notebook,
    kernel start included; cpu_s: CPU time of the kernel process; memory: address space per process (torch
    alone maps about 3.5 GB); sandbox_memory: memory of all the sandbox's processes together, its tmpfs
    folders included (a cgroup, where the machine has one: ``autograder.sandbox.cgroup``); processes: tasks
    (threads count) the sandbox's user may have (and, with a cgroup, the sandbox as a whole); file: largest
    file it may write; scratch: size of its private working folder and of its /tmp; output: bytes of a cell's
    output the grader keeps (twice that for one message, four times for the notebook:
    ``autograder.judge.judged_execute``).

    sandbox_memory is the per-process limit plus 2 GiB, so that one runaway process meets its own limit
    first (a MemoryError the notebook shows) even with both scratch folders full (they are memory too), and
    only processes that together hold more are ended by the OOM killer. 10 GiB a sandbox: two workers on a
    24 GiB machine leave 4 GiB for the grader and the system; ``python -m autograder.grade`` warns when
    workers times sandbox_memory exceeds the machine's memory.
    """

    cell_s: int = 180
    notebook_s: int = 900
    cpu_s: int = 1800
    memory: int = 8 * GiB
    sandbox_memory: int = 10 * GiB
    processes: int = 128
    file: int = 256 * MiB
    scratch: int = 512 * MiB
    output: int = 4 * MiB


def _read_only_roots() -> list[str]:
    """Host folders the kernel needs to read: the OS, the Python installation and its environment."""
    roots = ["/usr", "/etc", "/opt"]
    for prefix in {sys.base_prefix, sys.prefix, sys.exec_prefix}:
        roots.append(str(Path(prefix).resolve()))
    return roots


def bwrap_argv(workdir: str | os.PathLike, runtime_dir: str | os.PathLike,
               data_dir: str | os.PathLike | None = None, scratch: int = 512 * MiB,
               root: str | os.PathLike = ROOT, files: Sequence[tuple[int, str]] = ()) -> list[str]:
    """The ``bwrap`` command line (list of str) up to and excluding the command to run.

    workdir: the kernel's working folder as nbgrader asked for it; inside it is a fresh tmpfs, so what the
        submission writes there is thrown away and nothing it writes can be followed by the grader outside.
    runtime_dir: the folder holding the connection file and the kernel's Unix sockets (bound read-write).
    data_dir: the course's data set, bound read-only (or None).
    files: ``(fd, path)`` pairs: a file written at ``path`` inside (in a private tmpfs) from the open
        file ``fd``, which the caller passes to bwrap; its folder is created world-writable, as /tmp is.
    """
    if os.geteuid() == 0:
        # As root bwrap needs no user namespace; the kernel then drops to a private uid of its own
        # (autograder.judge.kernel_boot), which is what makes the process limit count: root ignores
        # RLIMIT_NPROC.
        argv = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup-try", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add",
                "CAP_SETGID"]
    else:
        argv = ["bwrap", "--unshare-all", "--cap-drop", "ALL"]
    argv += ["--die-with-parent", "--new-session", "--clearenv"]
    read_only = [path for path in _read_only_roots() if Path(path).exists()]
    packages = [str(Path(root) / "course"), str(Path(root) / "autograder")]
    binds = read_only + packages + [str(runtime_dir), str(workdir)]
    if data_dir is not None:
        binds.append(str(Path(data_dir).resolve()))
    # bwrap applies its arguments in order. The private /tmp comes first, so that folders bound later under
    # /tmp (a course or a virtual environment cloned there, the runtime folder) stay visible above it.
    argv += ["--perms", "1777", "--size", str(scratch), "--tmpfs", "/tmp"]
    for parent in sorted({str(a) for b in binds for a in Path(b).parents if str(a) not in ("/", "/tmp")},
                         key=len):
        # bwrap would copy the host folder's mode (/root is 0700): the kernel's private uid must pass through
        argv += ["--perms", "0755", "--dir", parent]
    for path in read_only + packages:
        argv += ["--ro-bind", path, path]
    for name in ("bin", "sbin", "lib", "lib64", "lib32"):
        host = Path("/") / name
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.exists():
            argv += ["--ro-bind", str(host), f"/{name}"]
    for secret in ("/etc/shadow", "/etc/gshadow", "/etc/sudoers"):
        if Path(secret).exists():
            argv += ["--ro-bind", "/dev/null", secret]
    if data_dir is not None and Path(data_dir).is_dir():
        argv += ["--ro-bind", str(Path(data_dir).resolve()), str(Path(data_dir).resolve())]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--perms", "1777", "--size", str(scratch), "--tmpfs", str(workdir)]
    argv += ["--bind", str(runtime_dir), str(runtime_dir)]
    for folder in sorted({str(Path(path).parent) for _, path in files}):
        argv += ["--perms", "1777", "--dir", folder]
    for fd, path in files:
        argv += ["--file", str(fd), str(path)]
    argv += ["--chdir", str(workdir)]
    return argv


def sandbox_env(workdir: str | os.PathLike, root: str | os.PathLike = ROOT,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's whole environment (dict); bwrap --clearenv drops the grader's own."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(workdir),
        "PYTHONPATH": str(root),
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "IPYTHONDIR": "/tmp/ipython",
        "TORCH_HOME": "/tmp/torch",
        "NBGRADER_EXECUTION": "autograde",
        "LANG": "C.UTF-8",
    }
    env.update(extra or {})
    return env


def font_cache(folder: str | os.PathLike) -> str | None:
    """Copy this process's matplotlib font list (``fontlist-*.json``, built when ``matplotlib.font_manager``
    is first imported) into ``folder``; returns the copy's path (for ``LaunchConfig.font_cache``), or None
    when there is none. Each kernel gets it in its own MPLCONFIGDIR instead of scanning the system's fonts
    again."""
    import matplotlib
    import matplotlib.font_manager  # noqa: F401  (builds the list if this process has none yet)

    found = sorted(Path(matplotlib.get_cachedir()).glob("fontlist-*.json"))
    if not found:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    copy = Path(folder) / found[-1].name
    copy.write_bytes(found[-1].read_bytes())
    return str(copy)


def setenv_args(env: dict[str, str]) -> list[str]:
    """bwrap arguments that set exactly ``env`` (dict) inside the sandbox."""
    return [arg for name, value in env.items() for arg in ("--setenv", name, value)]


def check_available() -> None:
    """Start a trivial sandbox; raise SandboxUnavailable with what to do when that fails."""
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable(
            "bubblewrap is not installed, so student code cannot be sandboxed. Install it (Debian/Ubuntu: "
            "sudo apt install bubblewrap) or, knowing that student code will then run with your rights, pass "
            "--unsafe-no-sandbox."
        )
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"grader-probe-{secrets.token_hex(4)}"
    probe.mkdir()
    try:
        argv = bwrap_argv(probe, probe) + [sys.executable, "-c", "import socket; print('ok')"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    if proc.returncode != 0 or proc.stdout.strip() != "ok":
        raise SandboxUnavailable(
            "bubblewrap is installed but could not start a sandbox here:\n  "
            + proc.stderr.strip().replace("\n", "\n  ")
            + "\nUser namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu "
            "24.04 an AppArmor profile for bwrap), or this runs in a container that forbids them. Fix that, "
            "or pass --unsafe-no-sandbox knowing that student code will then run with your rights."
        )


_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MNT_DETACH = 2, 4, 8, 2


def mount_runtime(folder: str | os.PathLike, size: int = RUNTIME_SIZE) -> bool:
    """Mount a tmpfs of ``size`` bytes (and RUNTIME_FILES files) on the runtime folder ``folder``: the kernel
    can write there (its sockets), so on the host disk it could fill the disk. Returns True, or False where
    this process may not mount (not root): the folder then stays on the disk, where only RLIMIT_FSIZE bounds
    each file, and ``limits_in_force`` says so."""
    if os.geteuid() != 0:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"size={size},nr_inodes={RUNTIME_FILES},mode=0700".encode()
    return libc.mount(b"tmpfs", os.fsencode(folder), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                      options) == 0


def unmount_runtime(folder: str | os.PathLike | None) -> bool:
    """Undo ``mount_runtime`` (lazily: a sandbox still holding it keeps its copy until it is gone); returns
    whether a tmpfs was mounted there."""
    if folder is None or not os.path.ismount(folder):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.umount2(os.fsencode(folder), _MNT_DETACH) == 0


_runtime_tmpfs = None


def runtime_tmpfs_available() -> bool:
    """Whether ``mount_runtime`` works here (tried once on a scratch folder)."""
    global _runtime_tmpfs
    if _runtime_tmpfs is None:
        probe = Path(tempfile.mkdtemp(prefix="rt-probe-"))
        try:
            _runtime_tmpfs = mount_runtime(probe, MiB)
        finally:
            unmount_runtime(probe)
            probe.rmdir()
    return _runtime_tmpfs


def _size(n: int) -> str:
    return f"{n / GiB:g} GiB" if n >= GiB else f"{n / MiB:g} MiB"


def limits_in_force(limits: Limits) -> str:
    """One line for the instructor's report: which limits hold a sandbox on this machine (``limits``:
    Limits)."""
    found = cgroup.support()
    per_process = f"{_size(limits.memory)} address space per process"
    if found.kind:
        tasks = f" and {limits.processes} tasks" if "pids" in found.bases else ""
        memory = (f"{found.describe()}: {_size(limits.sandbox_memory)} memory{tasks} per sandbox "
                  f"({per_process}"
                  + ("" if tasks else f", {limits.processes} tasks for the sandbox's user")
                  + f"), {_size(NBGRADER_MEMORY)} for nbgrader's process")
    else:
        memory = (f"{found.describe()}: per-process limits only, {per_process} and {limits.processes} "
                  "tasks for the sandbox's user (several processes together are not bounded)")
    runtime = (f"runtime folder on a {_size(RUNTIME_SIZE)} tmpfs" if runtime_tmpfs_available() else
               "runtime folder on the host disk (mounting a tmpfs is not allowed here), files up to "
               f"{_size(limits.file)} each")
    output = (f"at most {_size(limits.output)} of output per cell kept "
              f"({_size(4 * limits.output)} per notebook, messages over {_size(2 * limits.output)} dropped)")
    return "; ".join([memory, runtime, output])


