"""The kernelspec's launcher: ``python -m autograder.sandbox.launcher CONNECTION_FILE`` runs outside the
sandbox, joins its control group, sets the limits and starts the kernel in bubblewrap, or hands the connection
file to a pre-started kernel (``autograder.sandbox.warm``)."""
from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from autograder.judge import kernel_boot
from autograder.publish.layout import ROOT
from autograder.sandbox import cgroup
from autograder.sandbox.policy import (
    CONFIG_ENV,
    KERNEL_NAME,
    PRIVATE_UID_BASE,
    Limits,
    bwrap_argv,
    sandbox_env,
    setenv_args,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: this process stays light
if TYPE_CHECKING:
    from collections.abc import Sequence

_MODULE = __spec__.name  # the -m target: this module, as imports name it


def write_kernelspec(folder: str | os.PathLike, config_path: str | os.PathLike) -> Path:
    """Write ``folder/kernels/course-sandbox/kernel.json``; returns the folder to put on JUPYTER_PATH.

    The kernel is started with interrupt_mode "message": it lives in its own session inside the sandbox,
    where a signal to the launcher's process group would not reach it.
    """
    spec_dir = Path(folder) / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", _MODULE, "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
        "interrupt_mode": "message",
        "env": {CONFIG_ENV: str(config_path), "PYTHONPATH": str(ROOT)},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return Path(folder)


@dataclass
class LaunchConfig:
    """What the launcher reads from CONFIG_ENV (written by the worker for one submission)."""

    limits: dict[str, int]
    data_dir: str | None = None
    seed: int = 0
    unsafe_no_sandbox: bool = False
    runtime_dir: str | None = None
    # matplotlib's fontlist-*.json, copied into the kernel's MPLCONFIGDIR (see main)
    font_cache: str | None = None
    # a pre-started kernel's socket (start_warm): the launcher hands it the connection file
    warm: str | None = None
    workdir: str | None = None  # the pre-started kernel's working folder (a private tmpfs inside, as always)
    # the sandbox's control group (autograder.sandbox.cgroup.Group.folders), made by the Slot
    cgroup: list[str] | None = None
    cgroup_kind: str | None = None  # "v1" or "v2"
    # the group of the nbgrader process that uses this kernel (removed with it)
    nbgrader_cgroup: list[str] | None = None

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> LaunchConfig:
        return cls(**json.loads(Path(path).read_text()))


def _tasks_of(uid: int) -> int:
    """How many tasks (processes and threads) user ``uid`` has now."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"\nUid:\t{uid}\t" in text:
            count += int(text.split("\nThreads:\t", 1)[1].split()[0]) if "\nThreads:\t" in text else 1
    return count


def _set_limits(limits: Limits, private_uid: int | None) -> None:
    """RLIMIT_NPROC counts every task of the real user: as root the kernel gets a private uid and the
    limit is exact; otherwise the limit is what the user already runs plus the allowance."""

    def cap(which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))

    cap(resource.RLIMIT_CPU, limits.cpu_s)
    cap(resource.RLIMIT_AS, limits.memory)
    cap(resource.RLIMIT_NPROC, limits.processes if private_uid else _tasks_of(os.getuid()) + limits.processes)
    cap(resource.RLIMIT_FSIZE, limits.file)
    cap(resource.RLIMIT_CORE, 0)
    os.nice(5)  # a submission that spins cannot starve the grader's own processes


def _connection_file(path: str | os.PathLike, config: LaunchConfig) -> Path:
    """The connection file nbgrader wrote, checked: in the private runtime folder, ipc sockets only.
    Raises ValueError with what is wrong."""
    path = Path(path).resolve()
    if config.runtime_dir is None or path.parent != Path(config.runtime_dir).resolve():
        # The folder holding the connection file is bound into the sandbox read-write: it must be the
        # worker's private runtime folder, never a shared one such as /tmp.
        raise ValueError(f"connection file {path} is not in the private runtime folder {config.runtime_dir}")
    info = json.loads(path.read_text())
    if info.get("transport") != "ipc" or Path(info.get("ip", "")).parent != path.parent:
        # No network inside: the kernel must talk over Unix sockets in the runtime folder.
        raise ValueError(f"the kernel must use ipc sockets in {config.runtime_dir}, "
                         f"got {info.get('transport')} {info.get('ip')}")
    return path


def private_uid_of(launcher_pid: int) -> int:
    """The private uid a sandboxed kernel runs as when grading as root: one per launcher process."""
    return PRIVATE_UID_BASE + launcher_pid % 100_000


def _start_kernel(config: LaunchConfig, workdir: Path, connection_file: Path | None = None,
                  kernel_args: Sequence[str] = ()) -> tuple[subprocess.Popen, int | None, int | None]:
    """Start the grading kernel (``autograder.judge.kernel_boot``) in the sandbox (or, opted out, without it);
    returns (child, go pipe's write end or None, private uid or None).

    With ``connection_file`` None the kernel starts, imports torch and then waits for the connection file's
    path on its go pipe (a pre-started kernel); closing the pipe without writing makes it exit.
    """
    limits = Limits(**config.limits)
    extra = {"GRADER_SEED": str(config.seed)}
    inherit = []
    go_w = None
    if connection_file is None:
        go_r, go_w = os.pipe()
        extra["GRADER_GO_FD"] = str(go_r)
        inherit.append(go_r)
    private_uid = None
    runtime = Path(config.runtime_dir)
    if os.geteuid() == 0 and not config.unsafe_no_sandbox:
        private_uid = private_uid_of(os.getpid())
        extra["GRADER_UID"] = str(private_uid)
        os.chown(runtime, private_uid, private_uid)  # the kernel makes its sockets there
        if connection_file is not None:
            os.chown(connection_file, private_uid, private_uid)
    kernel = [sys.executable, "-m", kernel_boot.__name__]
    kernel += ["-f", str(connection_file), *kernel_args] if connection_file is not None else []
    env = sandbox_env(workdir, extra=extra)
    files = []
    if config.unsafe_no_sandbox:  # the instructor's explicit, logged opt-out: limits only, no namespaces
        argv = kernel
    else:
        # matplotlib's font list, built once by the grader: without it every kernel's fresh MPLCONFIGDIR
        # makes matplotlib scan the system's fonts again (about 0.6 s a notebook). A copy inside, never a
        # bind.
        if config.font_cache and Path(config.font_cache).is_file():
            files.append((os.open(config.font_cache, os.O_RDONLY),
                          f"{env['MPLCONFIGDIR']}/{Path(config.font_cache).name}"))
        argv = (bwrap_argv(workdir, runtime, config.data_dir, limits.scratch, files=files) + setenv_args(env)
                + kernel)
        env = None  # bwrap --clearenv, then --setenv each variable
    groups = config.cgroup or []

    def before_exec() -> None:
        cgroup.join(groups)  # first: bwrap and every process it starts are counted in the sandbox's group
        _set_limits(limits, private_uid)

    child = subprocess.Popen(argv, pass_fds=(*inherit, *(fd for fd, _ in files)), env=env,
                             preexec_fn=before_exec)
    for fd in (*inherit, *(fd for fd, _ in files)):
        os.close(fd)
    return child, go_w, private_uid


def _attach(config: LaunchConfig, connection_file: Path) -> int:
    """The kernelspec's launcher for a pre-started kernel: hand over the connection file, wait for its
    exit."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(config.warm)
    except OSError as err:
        sys.exit(f"grading sandbox: the pre-started kernel is not there ({err})")
    conn.sendall(f"{connection_file}\n".encode())
    reply = conn.makefile("rb").readline().decode().split(" ", 1)
    if reply[0] == "exit":
        return int(reply[1])
    sys.exit("grading sandbox: "
             + (reply[1].strip() if len(reply) > 1 else "the pre-started kernel's launcher died"))


def main(argv: list[str] | None = None) -> None:
    """Kernelspec entry point: ``python -m autograder.sandbox.launcher CONNECTION_FILE``."""
    args = argv or sys.argv[1:]
    config = LaunchConfig.load(os.environ[CONFIG_ENV])
    connection_file, kernel_args = Path(args[0]).resolve(), args[1:]
    try:
        connection_file = _connection_file(connection_file, config)
    except ValueError as err:
        sys.exit(f"grading sandbox: {err}")
    if config.warm:
        sys.exit(_attach(config, connection_file))
    child, _, _ = _start_kernel(config, Path.cwd(), connection_file, kernel_args)
    sys.exit(child.wait())


if __name__ == "__main__":
    main()

