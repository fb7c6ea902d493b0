"""Pre-started grading kernels (autograder.grade.kernels, autograder.sandbox.warm.start_warm): started and
waiting before anything is handed to them, started no more often than needed, and never outliving the grader
or the launcher that uses them. The whole grading path through them is covered by
tests/grader/test_grader.py."""
import json
import os
import socket
import time

import pytest

from autograder.grade.kernels import KernelPool, Slot
from autograder.sandbox.policy import Limits, check_available
from tests.support.processes import alive, cmdline, descendants, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _sandbox():
    check_available()  # these kernels run in the real sandbox; a machine without one fails here, loudly


def _booted(slot):
    """The slot's kernel start-up code (autograder.judge.kernel_boot) runs, inside the sandbox, below its
    launcher."""
    return any("autograder.judge.kernel_boot" in cmdline(pid) for pid in descendants(slot.process.pid))


def _handover(slot, connection_file):
    """Do what the kernelspec's launcher does: send the connection file's path, keep the socket open."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(slot.config.warm)
    conn.sendall(f"{connection_file}\n".encode())
    return conn


def test_prestarted_kernel_starts_then_waits(tmp_path):
    """Before any connection file arrives the kernel has started and waits: no ipykernel, no judge socket."""
    slot = Slot(tmp_path, Limits())
    groups = [f for g in (slot.cgroup, slot.nbgrader_cgroup) if g is not None for f in g.folders]
    try:
        assert wait_until(lambda: _booted(slot)), "the kernel's start-up code never ran"
        time.sleep(1)
        assert slot.process.poll() is None and _booted(slot)
        assert not (slot.runtime / "judge.sock").exists(), ("nothing may listen before a submission is "
                                                            "handed over")
        assert all(f.is_dir() for f in groups) and (slot.runtime_tmpfs == os.path.ismount(slot.runtime))
    finally:
        slot.stop(grace_s=0)
    assert slot.process.poll() is not None and not slot.runtime.exists() and not slot.control.exists()
    assert not any(f.exists() for f in groups), "the sandbox's control groups outlived it"


def test_a_connection_file_outside_the_runtime_folder_is_refused(tmp_path):
    """The launcher may only hand over a connection file in the kernel's own runtime folder (ipc sockets)."""
    slot = Slot(tmp_path, Limits())
    stray = tmp_path / "kernel.json"
    stray.write_text(json.dumps({"transport": "ipc", "ip": str(tmp_path / "kernel")}))
    try:
        conn = _handover(slot, stray)
        reply = conn.makefile("rb").readline().decode()
        assert reply.startswith("error ") and "not in the private runtime folder" in reply
        assert wait_until(lambda: slot.process.poll() is not None, 30), "the refused kernel is still running"
        conn.close()
    finally:
        slot.stop(grace_s=0)


def test_the_kernel_dies_with_the_launcher_that_took_it(tmp_path):
    """A launcher killed by nbgrader (its socket closes) takes the pre-started kernel with it."""
    slot = Slot(tmp_path, Limits())
    connection_file = slot.runtime / "kernel-test.json"
    connection_file.write_text(json.dumps({"transport": "ipc", "ip": str(slot.runtime / "kernel"), "key": "",
                                           "signature_scheme": "hmac-sha256", "shell_port": 1,
                                           "iopub_port": 2, "stdin_port": 3, "control_port": 4,
                                           "hb_port": 5}))
    try:
        conn = _handover(slot, connection_file)
        assert wait_until(lambda: (slot.runtime / "kernel-1").exists()), "ipykernel never opened its sockets"
        assert wait_until(lambda: (slot.runtime / "judge.sock").exists()), ("the kernel does not listen "
                                                                            "for the judge")
        time.sleep(1)
        assert slot.process.poll() is None, "the kernel should be serving until its launcher goes"
        conn.close()
        assert wait_until(lambda: slot.process.poll() is not None, 30), "the kernel outlived its launcher"
    finally:
        slot.stop(grace_s=0)


def test_pool_starts_one_per_worker_only_as_many_as_expected_and_stops_the_rest(tmp_path):
    pool = KernelPool(2, Limits())
    try:
        assert len(pool._slots) == 2 and all(s.process.poll() is None for s in pool._slots)
        pool.expect(3)
        first = pool.take()
        assert len(pool._slots) == 3, "a replacement while more submissions wait"
        pool.take(), pool.take()
        assert len(pool._slots) == 3, "no kernel started that no submission will use"
        for slot in pool._slots:
            assert wait_until(lambda: _booted(slot)), "a kernel did not start"
        first.stop(grace_s=0)
        pids = [s.process.pid for s in pool._slots]
    finally:
        pool.close()
    assert not pool.folder.exists()
    assert not any(alive(pid) for pid in pids)
    assert not any(s.runtime.exists() or s.control.exists() for s in pool._slots)


def test_a_waiting_kernel_dies_with_a_killed_grader(tmp_path):
    """A grader killed outright (no clean-up runs) leaves no pre-started kernel waiting behind it."""
    import os
    import signal
    import subprocess
    import sys

    script = (f"import time\nfrom autograder.grade.kernels import Slot\n"
              f"from autograder.sandbox.policy import Limits\n"
              f"slot = Slot({str(tmp_path)!r}, Limits())\nprint(slot.process.pid, flush=True)\n"
              f"time.sleep(600)\n")
    grader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    warm_pid = int(grader.stdout.readline())
    assert wait_until(lambda: any("autograder.judge.kernel_boot" in cmdline(p)
                                  for p in descendants(warm_pid)))
    assert alive(warm_pid)
    os.kill(grader.pid, signal.SIGKILL)
    grader.wait()
    assert wait_until(lambda: not alive(warm_pid), 15), ("the pre-started kernel's launcher outlived "
                                                         "the grader")
