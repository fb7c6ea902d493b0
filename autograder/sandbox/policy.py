"""The sandbox each graded notebook's kernel runs in: bubblewrap (Linux namespaces) plus resource limits.

Why bubblewrap: it needs no daemon and no root (unprivileged user namespaces), is packaged by Debian and
every major distribution (Flatpak is built on it), and starts in milliseconds, so a sandboxed kernel costs
about what a plain one does. Docker is what JupyterHub servers and laptops usually do *not* have.

How it is wired: nbgrader starts kernels from a kernelspec. The grader writes a kernelspec whose argv is
``python -m autograder.sandbox {connection_file}`` (this module's ``main``), which runs *outside* the sandbox:

1. moves itself into the sandbox's control group (``autograder.cgroup``: memory and tasks of all its processes
   together, where the machine allows) and sets resource limits that the sandbox inherits (CPU seconds,
   address space per process, processes, file size, no core dumps);
2. starts ``bwrap`` around ``python -m autograder.kernel_boot -f {connection_file}`` (which also listens for
   the judge, ``autograder.judge``, in the runtime folder).

The judge, which runs the test cells, is sandboxed with the same ``bwrap_argv`` (``autograder.judges``).

Pre-started kernels (``start_warm``): a kernel spends over a second importing torch before it can
run a cell, and nbgrader only starts it after its own preparations. So the worker starts the sandboxed kernel
*before* running nbgrader, with the same limits and namespaces: it imports torch, then waits for a
connection file on a pipe, running no student code until then. The kernelspec's launcher, when nbgrader runs
it, finds ``LaunchConfig.warm`` set and, instead of starting a kernel, hands the connection file to the
waiting one over a Unix socket that only the grader can reach (``attach``), then exits when it exits, with
its exit code. If the launcher is killed, the pre-started kernel is killed too.

What the kernel sees (``bwrap_argv``): the system folders and the Python installation read-only; of the
course only ``course/`` and ``autograder/`` read-only (not ``source/``, ``release/``, ``submitted/``,
``autograded/``, the gradebook, other students or any home folder); the data set read-only when one is
configured; a private size-limited tmpfs as its working folder and ``/tmp``; its own connection file and
kernel sockets (the kernel talks ZeroMQ over Unix sockets, since it has no network: ``--unshare-net``), in a
runtime folder that is itself a 16 MiB tmpfs when grading as root (``mount_runtime``); new user, PID, IPC, UTS
and cgroup namespaces; no capabilities; dies with the grader.

What is in force on this machine, in one line for the instructor's report: ``limits_in_force``.
"""
import ctypes
import json
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from autograder import cgroup
from autograder.course_dir import ROOT

KERNEL_NAME = "course-sandbox"
CONFIG_ENV = "GRADER_SANDBOX_CONFIG"
MiB = 1024 * 1024
GiB = 1024 * MiB
PRIVATE_UID_BASE = 200_000  # uids no account uses: one per sandboxed kernel when grading as root
# The runtime folder holds the connection file (about 300 bytes) and five Unix sockets (no data on disk): 16 MiB
# and 256 files is ample, and all a kernel that writes there can take (the folder is bound read-write).
RUNTIME_SIZE = 16 * MiB
RUNTIME_FILES = 256
# bubblewrap's own tasks in the sandbox's group (its monitor and the PID namespace's init), beside the kernel's.
BWRAP_TASKS = 4
# The memory of the forked nbgrader process that runs one submission (autograder.worker): about 100 MiB for
# 01_layers; what a submission's output can add is bounded by SealedExecute's caps, except a ZeroMQ message
# split in many parts (each part is bounded, their number is not), which this limit catches.
NBGRADER_MEMORY = 1 * GiB


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here; grading refuses rather than run unsandboxed."""


@dataclass
class Limits:
    """What one submission may use. Times in seconds, sizes in bytes.

    cell_s: wall time per cell (nbgrader's Execute.timeout); notebook_s: wall time for the whole notebook,
    kernel start included; cpu_s: CPU time of the kernel process; memory: address space per process (torch
    alone maps about 3.5 GB); sandbox_memory: memory of all the sandbox's processes together, its tmpfs
    folders included (a cgroup, where the machine has one: ``autograder.cgroup``); processes: tasks (threads
    count) the sandbox's user may have (and, with a cgroup, the sandbox as a whole); file: largest file it may
    write; scratch: size of its private working folder and of its /tmp; output: bytes of a cell's output the
    grader keeps (twice that for one message, four times for the notebook: ``autograder.judged_execute``).

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


def _read_only_roots():
    """Host folders the kernel needs to read: the OS, the Python installation and its environment."""
    roots = ["/usr", "/etc", "/opt"]
    for prefix in {sys.base_prefix, sys.prefix, sys.exec_prefix}:
        roots.append(str(Path(prefix).resolve()))
    return roots


def bwrap_argv(workdir, runtime_dir, data_dir=None, scratch=512 * MiB, root=ROOT, files=()):
    """The ``bwrap`` command line (list of str) up to and excluding the command to run.

    workdir: the kernel's working folder as nbgrader asked for it; inside it is a fresh tmpfs, so what the
        submission writes there is thrown away and nothing it writes can be followed by the grader outside.
    runtime_dir: the folder holding the connection file and the kernel's Unix sockets (bound read-write).
    data_dir: the course's data set, bound read-only (or None).
    files: ``(fd, path)`` pairs: a file written at ``path`` inside (in a private tmpfs) from the open file ``fd``,
        which the caller passes to bwrap; its folder is created world-writable, as /tmp is.
    """
    if os.geteuid() == 0:
        # As root bwrap needs no user namespace; the kernel then drops to a private uid of its own
        # (autograder.kernel_boot), which is what makes the process limit count: root ignores RLIMIT_NPROC.
        argv = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
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
    for parent in sorted({str(a) for b in binds for a in Path(b).parents if str(a) not in ("/", "/tmp")}, key=len):
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


def sandbox_env(workdir, root=ROOT, extra=None):
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


def font_cache(folder):
    """Copy this process's matplotlib font list (``fontlist-*.json``, built when ``matplotlib.font_manager``
    is first imported) into ``folder``; returns the copy's path (for ``LaunchConfig.font_cache``), or None when
    there is none. Each kernel gets it in its own MPLCONFIGDIR instead of scanning the system's fonts again."""
    import matplotlib
    import matplotlib.font_manager  # noqa: F401  (builds the list if this process has none yet)

    found = sorted(Path(matplotlib.get_cachedir()).glob("fontlist-*.json"))
    if not found:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    copy = Path(folder) / found[-1].name
    copy.write_bytes(found[-1].read_bytes())
    return str(copy)


def setenv_args(env):
    """bwrap arguments that set exactly ``env`` (dict) inside the sandbox."""
    return [arg for name, value in env.items() for arg in ("--setenv", name, value)]


def check_available():
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
            "bubblewrap is installed but could not start a sandbox here:\n  " + proc.stderr.strip().replace("\n", "\n  ")
            + "\nUser namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu 24.04 "
            "an AppArmor profile for bwrap), or this runs in a container that forbids them. Fix that, or pass "
            "--unsafe-no-sandbox knowing that student code will then run with your rights."
        )


_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MNT_DETACH = 2, 4, 8, 2


def mount_runtime(folder, size=RUNTIME_SIZE):
    """Mount a tmpfs of ``size`` bytes (and RUNTIME_FILES files) on the runtime folder ``folder``: the kernel can
    write there (its sockets), so on the host disk it could fill the disk. Returns True, or False where this
    process may not mount (not root): the folder then stays on the disk, where only RLIMIT_FSIZE bounds each
    file, and ``limits_in_force`` says so."""
    if os.geteuid() != 0:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"size={size},nr_inodes={RUNTIME_FILES},mode=0700".encode()
    return libc.mount(b"tmpfs", os.fsencode(folder), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, options) == 0


def unmount_runtime(folder):
    """Undo ``mount_runtime`` (lazily: a sandbox still holding it keeps its copy until it is gone); returns
    whether a tmpfs was mounted there."""
    if folder is None or not os.path.ismount(folder):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.umount2(os.fsencode(folder), _MNT_DETACH) == 0


_runtime_tmpfs = None


def runtime_tmpfs_available():
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


def _size(n):
    return f"{n / GiB:g} GiB" if n >= GiB else f"{n / MiB:g} MiB"


def limits_in_force(limits):
    """One line for the instructor's report: which limits hold a sandbox on this machine (``limits``: Limits)."""
    found = cgroup.support()
    per_process = f"{_size(limits.memory)} address space per process"
    if found.kind:
        tasks = f" and {limits.processes} tasks" if "pids" in found.bases else ""
        memory = (f"{found.describe()}: {_size(limits.sandbox_memory)} memory{tasks} per sandbox ({per_process}"
                  + ("" if tasks else f", {limits.processes} tasks for the sandbox's user")
                  + f"), {_size(NBGRADER_MEMORY)} for nbgrader's process")
    else:
        memory = (f"{found.describe()}: per-process limits only, {per_process} and {limits.processes} tasks for "
                  "the sandbox's user (several processes together are not bounded)")
    runtime = (f"runtime folder on a {_size(RUNTIME_SIZE)} tmpfs" if runtime_tmpfs_available() else
               "runtime folder on the host disk (mounting a tmpfs is not allowed here), files up to "
               f"{_size(limits.file)} each")
    output = (f"at most {_size(limits.output)} of output per cell kept ({_size(4 * limits.output)} per notebook, "
              f"messages over {_size(2 * limits.output)} dropped)")
    return "; ".join([memory, runtime, output])


def write_kernelspec(folder, config_path):
    """Write ``folder/kernels/course-sandbox/kernel.json``; returns the folder to put on JUPYTER_PATH.

    The kernel is started with interrupt_mode "message": it lives in its own session inside the sandbox,
    where a signal to the launcher's process group would not reach it.
    """
    spec_dir = Path(folder) / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "autograder.sandbox", "{connection_file}"],
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

    limits: dict
    data_dir: str = None
    seed: int = 0
    unsafe_no_sandbox: bool = False
    runtime_dir: str = None
    font_cache: str = None  # matplotlib's fontlist-*.json, copied into the kernel's MPLCONFIGDIR (see main)
    warm: str = None  # a pre-started kernel's socket (start_warm): the launcher hands it the connection file
    workdir: str = None  # the pre-started kernel's working folder (a private tmpfs inside, as always)
    cgroup: list = None  # the sandbox's control group (autograder.cgroup.Group.folders), made by the Slot
    cgroup_kind: str = None  # "v1" or "v2"
    nbgrader_cgroup: list = None  # the group of the nbgrader process that uses this kernel (removed with it)

    def save(self, path):
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path):
        return cls(**json.loads(Path(path).read_text()))


def _tasks_of(uid):
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


def _set_limits(limits, private_uid):
    """RLIMIT_NPROC counts every task of the real user: as root the kernel gets a private uid and the
    limit is exact; otherwise the limit is what the user already runs plus the allowance."""

    def cap(which, value):
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))

    cap(resource.RLIMIT_CPU, limits.cpu_s)
    cap(resource.RLIMIT_AS, limits.memory)
    cap(resource.RLIMIT_NPROC, limits.processes if private_uid else _tasks_of(os.getuid()) + limits.processes)
    cap(resource.RLIMIT_FSIZE, limits.file)
    cap(resource.RLIMIT_CORE, 0)
    os.nice(5)  # a submission that spins cannot starve the grader's own processes


def _connection_file(path, config):
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
        raise ValueError(f"the kernel must use ipc sockets in {config.runtime_dir}, got {info.get('transport')} {info.get('ip')}")
    return path


def private_uid_of(launcher_pid):
    """The private uid a sandboxed kernel runs as when grading as root: one per launcher process."""
    return PRIVATE_UID_BASE + launcher_pid % 100_000


def _start_kernel(config, workdir, connection_file=None, kernel_args=()):
    """Start the grading kernel (``autograder.kernel_boot``) in the sandbox (or, opted out, without it); returns
    (child, go pipe's write end or None, private uid or None).

    With ``connection_file`` None the kernel starts, imports torch and then waits for the connection file's path
    on its go pipe (a pre-started kernel); closing the pipe without writing makes it exit.
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
    kernel = [sys.executable, "-m", "autograder.kernel_boot"]
    kernel += ["-f", str(connection_file), *kernel_args] if connection_file is not None else []
    env = sandbox_env(workdir, extra=extra)
    files = []
    if config.unsafe_no_sandbox:  # the instructor's explicit, logged opt-out: limits only, no namespaces
        argv = kernel
    else:
        # matplotlib's font list, built once by the grader: without it every kernel's fresh MPLCONFIGDIR makes
        # matplotlib scan the system's fonts again (about 0.6 s a notebook). A copy inside, never a bind.
        if config.font_cache and Path(config.font_cache).is_file():
            files.append((os.open(config.font_cache, os.O_RDONLY),
                          f"{env['MPLCONFIGDIR']}/{Path(config.font_cache).name}"))
        argv = bwrap_argv(workdir, runtime, config.data_dir, limits.scratch, files=files) + setenv_args(env) + kernel
        env = None  # bwrap --clearenv, then --setenv each variable
    groups = config.cgroup or []

    def before_exec():
        cgroup.join(groups)  # first: bwrap and every process it starts are counted in the sandbox's group
        _set_limits(limits, private_uid)

    child = subprocess.Popen(argv, pass_fds=(*inherit, *(fd for fd, _ in files)), env=env, preexec_fn=before_exec)
    for fd in (*inherit, *(fd for fd, _ in files)):
        os.close(fd)
    return child, go_w, private_uid


def start_warm(config_path, listener):
    """Pre-start the kernel described by the LaunchConfig at ``config_path`` (its ``warm`` and ``workdir`` set).

    ``listener`` is a listening Unix socket, made by the caller before this returns so that the launcher can
    never connect too early; the pre-started kernel's launcher inherits it. Returns the launcher's Popen, in
    its own session: kill its process group when grading ends, whether or not the kernel was used.
    """
    env = dict(os.environ, **{CONFIG_ENV: str(config_path)})
    return subprocess.Popen([sys.executable, "-m", "autograder.sandbox", "--warm", str(listener.fileno())],
                            pass_fds=(listener.fileno(),), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _warm_main(config, listen_fd):
    """``python -m autograder.sandbox --warm FD``: start the kernel now; give it the connection file when the
    kernelspec's launcher connects to socket FD; tell the launcher the kernel's exit code when it exits."""
    listener = socket.socket(fileno=listen_fd)
    grader = os.getppid()
    child, go_w, private_uid = _start_kernel(config, Path(config.workdir))

    def die_with_the_grader():
        while os.getppid() == grader:  # the grader was killed (SIGKILL runs no clean-up): nothing may outlive it
            time.sleep(0.5)
        child.kill()
        # The grader's Slot.stop will never run: remove what it would have (the groups, the runtime tmpfs and the
        # socket folders).
        try:
            for folders in (config.cgroup, config.nbgrader_cgroup):
                if folders:
                    cgroup.Group(config.cgroup_kind, folders).destroy(timeout=5)
            unmount_runtime(config.runtime_dir)
            for folder in (config.runtime_dir, Path(config.warm).parent):
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            os._exit(1)

    threading.Thread(target=die_with_the_grader, daemon=True).start()
    conn, _ = listener.accept()
    listener.close()
    try:
        path = _connection_file(conn.makefile("rb").readline().decode().strip(), config)
        if private_uid is not None:
            os.chown(path, private_uid, private_uid)
        os.write(go_w, f"{path}\n".encode())
    except (OSError, ValueError) as err:
        conn.sendall(f"error {err}\n".encode())
        child.kill()
    os.close(go_w)

    def kill_when_launcher_goes():
        try:
            conn.recv(1)  # returns when the launcher exits or is killed: the kernel must not outlive it
        except OSError:
            pass
        child.kill()

    threading.Thread(target=kill_when_launcher_goes, daemon=True).start()
    code = child.wait()
    try:
        conn.sendall(f"exit {code}\n".encode())
    except OSError:
        pass
    return code


def _attach(config, connection_file):
    """The kernelspec's launcher for a pre-started kernel: hand over the connection file, wait for its exit."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(config.warm)
    except OSError as err:
        sys.exit(f"grading sandbox: the pre-started kernel is not there ({err})")
    conn.sendall(f"{connection_file}\n".encode())
    reply = conn.makefile("rb").readline().decode().split(" ", 1)
    if reply[0] == "exit":
        return int(reply[1])
    sys.exit("grading sandbox: " + (reply[1].strip() if len(reply) > 1 else "the pre-started kernel's launcher died"))


def main(argv=None):
    """Kernelspec entry point: ``python -m autograder.sandbox CONNECTION_FILE``; ``--warm FD`` pre-starts."""
    args = argv or sys.argv[1:]
    config = LaunchConfig.load(os.environ[CONFIG_ENV])
    if args[0] == "--warm":
        sys.exit(_warm_main(config, int(args[1])))
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
