"""Pre-started kernels: ``start_warm`` runs ``python -m autograder.sandbox.warm FD``, which starts the
sandboxed kernel before nbgrader needs it and gives it the connection file when the kernelspec's launcher
connects."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from autograder.sandbox import cgroup
from autograder.sandbox.launcher import LaunchConfig, _connection_file, _start_kernel
from autograder.sandbox.policy import CONFIG_ENV, unmount_runtime

_MODULE = __spec__.name  # the -m target: this module, as imports name it


def start_warm(config_path: str | os.PathLike, listener: socket.socket) -> subprocess.Popen:
    """Pre-start the kernel described by the LaunchConfig at ``config_path`` (its ``warm`` and ``workdir``
    set).

    ``listener`` is a listening Unix socket, made by the caller before this returns so that the launcher can
    never connect too early; the pre-started kernel's launcher inherits it. Returns the launcher's Popen, in
    its own session: kill its process group when grading ends, whether or not the kernel was used.
    """
    env = dict(os.environ, **{CONFIG_ENV: str(config_path)})
    return subprocess.Popen([sys.executable, "-m", _MODULE, str(listener.fileno())],
                            pass_fds=(listener.fileno(),), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _warm_main(config: LaunchConfig, listen_fd: int) -> int:
    """``python -m autograder.sandbox.warm FD``: start the kernel now; give it the connection file when the
    kernelspec's launcher connects to socket FD; tell the launcher the kernel's exit code when it exits."""
    listener = socket.socket(fileno=listen_fd)
    grader = os.getppid()
    child, go_w, private_uid = _start_kernel(config, Path(config.workdir))

    def die_with_the_grader() -> None:
        # the grader was killed (SIGKILL runs no clean-up): nothing may outlive it
        while os.getppid() == grader:
            time.sleep(0.5)
        child.kill()
        # The grader's Slot.stop will never run: remove what it would have (the groups, the runtime tmpfs and
        # the socket folders).
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

    def kill_when_launcher_goes() -> None:
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


def main(argv: list[str] | None = None) -> None:
    """``python -m autograder.sandbox.warm FD`` (started by ``start_warm``)."""
    args = argv or sys.argv[1:]
    sys.exit(_warm_main(LaunchConfig.load(os.environ[CONFIG_ENV]), int(args[0])))


if __name__ == "__main__":
    main()
