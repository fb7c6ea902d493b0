"""The grading kernel's start, inside the sandbox, before any student code: then ipykernel takes over.

1. graded as root: become the sandbox's private user (which also clears every capability);
2. seed every generator (the same numbers on every run) and import torch (the kernel's second of imports is
   spent here, while a pre-started kernel waits for its submission: ``autograder.grade.kernels``);
3. pre-started (``GRADER_GO_FD`` set): wait for the connection file's path on that pipe (closed without one:
   the grader did not need this kernel, exit);
4. listen for the judge (``autograder.judge.kernel_server``) in the runtime folder beside the connection file,
   and start ipykernel.

Nothing here protects the grade: the tests run in the judge (``autograder.judge.process``), and whatever
student code does to this process changes only what the kernel answers, never how the answers are checked.
"""
from __future__ import annotations

import os
import sys


def _read_all(fd: int) -> bytes:
    """Everything written to pipe ``fd`` until its writer closes it."""
    data = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return data


def seed_all(seed: int) -> None:
    import random

    import numpy
    import torch

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def main() -> None:
    """``python -m autograder.judge.kernel_boot -f CONNECTION_FILE`` (or pre-started: the path arrives on the
    pipe ``GRADER_GO_FD``)."""
    uid = os.environ.pop("GRADER_UID", None)
    if uid:
        os.setgroups([])
        os.setresgid(int(uid), int(uid), int(uid))
        os.setresuid(int(uid), int(uid), int(uid))
    seed_all(int(os.environ.get("GRADER_SEED", "0")))
    go_fd = os.environ.pop("GRADER_GO_FD", None)
    if go_fd is not None:
        connection_file = _read_all(int(go_fd)).decode().strip()
        if not connection_file:
            sys.exit(0)  # the grader did not need this kernel
        sys.argv[1:] = ["-f", connection_file]
    connection_file = sys.argv[sys.argv.index("-f") + 1]
    from autograder.judge import kernel_server

    kernel_server.start(os.path.dirname(os.path.abspath(connection_file)))
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
