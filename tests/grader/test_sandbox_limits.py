"""Limits that hold a whole sandbox, not one process: its memory and tasks together
(autograder.sandbox.cgroup), its runtime folder on a small tmpfs (autograder.sandbox.policy.mount_runtime),
and what its output may cost the trusted nbgrader process (autograder.judge.judged_execute). Real kernels in
the real sandbox; nothing is mocked.

The cgroup and tmpfs cases need root (as the grader runs on a course server, and in CI) and a machine with
cgroups: ``limits_in_force`` says what holds here, and those cases fail, saying why, where it is not.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.grade.kernels import Slot
from autograder.sandbox import cgroup
from autograder.sandbox.policy import (
    BWRAP_TASKS,
    RUNTIME_SIZE,
    GiB,
    Limits,
    MiB,
    check_available,
    limits_in_force,
)
from tests.support.adversarial import FILL_RUNTIME
from tests.support.processes import alive, wait_until

pytestmark = pytest.mark.slow
ROOT_ONLY = pytest.mark.usefixtures("_root")


@pytest.fixture
def _root():
    if os.geteuid() != 0:  # a failure that says why, never a skip: CI and course servers grade as root
        pytest.fail("mounting a tmpfs and making cgroups needs root: run these tests as root")


def _needs_cgroup():
    found = cgroup.support()
    if not found.kind:
        pytest.fail(f"no cgroup to hold a sandbox here: {found.describe()}")
    return found


@pytest.fixture(scope="module", autouse=True)
def _sandbox():
    check_available()  # these kernels run in the real sandbox; a machine without one fails here, loudly


def _mounted(path):
    return any(line.split()[4] == str(path) for line in Path("/proc/self/mountinfo").read_text().splitlines())


class Kernel:
    """A Slot's pre-started kernel, handed a connection file as the kernelspec's launcher does, and a client
    that runs code in it over the ipc sockets in the slot's runtime folder."""

    def __init__(self, slot):
        import socket

        from jupyter_client import BlockingKernelClient
        from jupyter_client.connect import write_connection_file

        self.slot = slot
        self.connection_file = slot.runtime / "kernel-test.json"
        write_connection_file(str(self.connection_file), transport="ipc", ip=str(slot.runtime / "kernel"),
                              key=os.urandom(16).hex().encode())
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn.connect(slot.config.warm)
        self.conn.sendall(f"{self.connection_file}\n".encode())
        self.client = BlockingKernelClient()
        self.client.load_connection_file(str(self.connection_file))
        self.client.start_channels(hb=False)  # no heartbeat yet while the kernel starts: wait for its reply
        self.client.wait_for_ready(timeout=120)

    def run(self, code, timeout=120):
        """(stdout and stderr text, reply status) of running ``code``."""
        out = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=hook)
        return "".join(out), reply["content"]["status"]

    def close(self):
        self.client.stop_channels()
        self.conn.close()


@pytest.fixture
def kernel(tmp_path, request):
    """A sandboxed kernel with the Limits given by ``@pytest.mark.parametrize("kernel", [Limits(...)],
    indirect=True)`` (default: Limits()); stopped afterwards."""
    slot = Slot(tmp_path, getattr(request, "param", Limits()))
    try:
        k = Kernel(slot)
        yield k
        k.close()
    finally:
        slot.stop(grace_s=0)


def test_limits_in_force_says_what_holds_here():
    line = limits_in_force(Limits())
    found = cgroup.support()
    assert line.startswith(found.describe())
    assert ("10 GiB memory and 128 tasks per sandbox" in line if found.kind
            else "per-process limits only" in line)
    assert ("runtime folder on a 16 MiB tmpfs" in line) == (os.geteuid() == 0)
    assert "at most 4 MiB of output per cell kept" in line


HOG = '''
import os, signal
kids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:  # each child stays well under its own address-space limit: 1 GiB in 128 MiB steps
        hog = [bytearray(2**27) for _ in range(8)]
        os._exit(0)
    kids.append(pid)
ends = [os.waitpid(pid, 0)[1] for pid in kids]
print("killed", sum(os.WIFSIGNALED(e) and os.WTERMSIG(e) == signal.SIGKILL for e in ends), "of", len(kids))
'''


@ROOT_ONLY
@pytest.mark.parametrize("kernel", [Limits(sandbox_memory=int(1.5 * GiB))], indirect=True)
def test_forked_children_together_cannot_exceed_the_sandbox_memory(kernel):
    """Three children of 1 GiB each, each far under the 8 GiB per process: together they meet the sandbox's
    1.5 GiB, and the OOM killer ends children inside the sandbox while the kernel (and the host) carry on."""
    _needs_cgroup()
    group = kernel.slot.cgroup
    assert group.procs(), "the kernel is not in the sandbox's group"
    out, status = kernel.run(HOG)
    assert status == "ok", out
    killed = int(out.split()[1])
    assert killed >= 1, out
    assert group.oom_kills() >= killed
    assert group.memory_peak() <= 1.5 * GiB
    assert kernel.run("print(6 * 7)") == ("42\n", "ok"), "the kernel itself is still there"


FORKS = '''
import os, time
kids = []
try:
    for _ in range(500):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
except OSError as err:
    print("refused:", type(err).__name__)
print("made", len(kids))
for pid in kids:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
'''


@pytest.mark.parametrize("kernel", [Limits(processes=32)], indirect=True)
def test_tasks_are_bounded_for_the_whole_sandbox(kernel):
    """Forks stop short of the sandbox's task limit (threads count too); with a cgroup the group holds it."""
    out, status = kernel.run(FORKS)
    assert status == "ok" and "refused: BlockingIOError" in out, out
    assert int(out.split("made")[1]) < 32
    group = kernel.slot.cgroup
    if group is not None and "pids" in cgroup.support().bases:
        pids = [f for f in group.folders if (f / "pids.max").exists()]
        assert pids and (pids[0] / "pids.max").read_text().strip() == str(32 + BWRAP_TASKS)


@ROOT_ONLY
def test_the_group_alone_bounds_tasks(tmp_path):
    """Unsandboxed as root, RLIMIT_NPROC counts nothing (root ignores it): only the group's pids.max stops
    forks."""
    found = _needs_cgroup()
    if "pids" not in found.bases:
        pytest.fail("no pids controller here to hold the sandbox's tasks")
    slot = Slot(tmp_path, Limits(processes=32), unsafe=True)
    kernel = None
    try:
        kernel = Kernel(slot)
        out, status = kernel.run(FORKS)
    finally:
        if kernel is not None:
            kernel.close()
        slot.stop(grace_s=0)
    assert status == "ok" and "refused: BlockingIOError" in out, out
    assert int(out.split("made")[1]) < 32 + BWRAP_TASKS




@ROOT_ONLY
def test_the_runtime_folder_holds_16_mib_and_the_kernel_still_talks(kernel):
    """The connection file and the ipc sockets work on the tmpfs (this client talks through them); a kernel
    that writes there stops at the tmpfs's size, and still answers."""
    slot = kernel.slot
    assert slot.runtime_tmpfs and _mounted(slot.runtime)
    out, status = kernel.run(FILL_RUNTIME)
    assert status == "ok" and "runtime folder: No space left on device" in out, out
    assert int(out.split("wrote")[1].split()[0]) * MiB <= RUNTIME_SIZE
    stat = os.statvfs(slot.runtime)
    assert stat.f_blocks * stat.f_frsize <= RUNTIME_SIZE
    assert kernel.run("print('still here')") == ("still here\n", "ok")


@ROOT_ONLY
def test_stop_removes_the_groups_and_the_mount_even_after_the_launcher_was_killed(tmp_path):
    """The launcher is SIGKILLed with a process of its kernel that left the kernel's session (run unsandboxed,
    so that no PID namespace ends it): Slot.stop still kills it through the group, removes both groups,
    unmounts the runtime folder and removes it."""
    found = _needs_cgroup()
    slot = Slot(tmp_path, Limits(), unsafe=True)
    kernel = None
    try:
        kernel = Kernel(slot)
        out, _ = kernel.run("import os, subprocess\n"
                            "p = subprocess.Popen(['sleep', '600'], start_new_session=True)\nprint(p.pid)")
        stray = int(out)
        assert alive(stray) and stray in slot.cgroup.procs()
        folders = slot.cgroup.folders + slot.nbgrader_cgroup.folders
        assert all(f.is_dir() for f in folders) and _mounted(slot.runtime)
        os.kill(slot.process.pid, signal.SIGKILL)
        slot.process.wait()
        assert alive(stray), "nothing but the group reaches it"
    finally:
        if kernel is not None:
            kernel.close()
        slot.stop(grace_s=0)
    assert not alive(stray)
    assert not any(f.exists() for f in folders), found
    assert not _mounted(slot.runtime) and not slot.runtime.exists() and not slot.control.exists()


@ROOT_ONLY
def test_a_killed_grader_leaves_no_group_and_no_mount(tmp_path):
    """The grader is SIGKILLed (no Slot.stop ever runs): the pre-started kernel's launcher removes the groups,
    the runtime tmpfs and the socket folders as it goes."""
    _needs_cgroup()
    script = ("import json, time\nfrom autograder.grade.kernels import Slot\n"
              "from autograder.sandbox.policy import Limits\n"
              f"slot = Slot({str(tmp_path)!r}, Limits())\n"
              "groups = [str(f) for f in slot.cgroup.folders + slot.nbgrader_cgroup.folders]\n"
              "print(json.dumps([str(slot.runtime), groups]), flush=True)\ntime.sleep(600)\n")
    grader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    runtime, folders = json.loads(grader.stdout.readline())
    assert _mounted(runtime) and all(Path(f).is_dir() for f in folders)
    assert wait_until(lambda: any(Path(f, "cgroup.procs").read_text().strip() for f in folders)), \
        "no kernel in the group"
    os.kill(grader.pid, signal.SIGKILL)
    grader.wait()
    assert wait_until(lambda: not _mounted(runtime) and not any(Path(f).exists() for f in folders), 30), \
        "the group or the runtime tmpfs outlived the grader"
    assert not Path(runtime).exists()


# --- what a submission's output may cost the trusted nbgrader process: graded end to end -------------------

FLOOD = '''
import sys
line = "x" * (2**20 - 1) + "\\n"
for _ in range(1024):  # 1 GiB in 1 MiB messages
    sys.stdout.write(line)
    sys.stdout.flush()
'''
ONE_BIG_MESSAGE = '''
import sys
sys.stdout.write("y" * (256 * 2**20))  # one 256 MiB message: over the 8 MiB a message may have
sys.stdout.flush()
'''
MANY_PARTS = '''
k = get_ipython().kernel
part = b"z" * (4 * 2**20)  # one message of 384 parts of 4 MiB: each under the cap, 1.5 GiB together
k.session.send(k.iopub_socket, "stream", {"name": "stdout", "text": "parts"}, parent=k.get_parent("shell"),
               buffers=[part] * 384)
import time
time.sleep(3)
'''


@pytest.fixture(scope="module")
def grade(tmp_path_factory):
    """grade(name, code) -> (Result, autograded notebook or None, nbgrader's log): the reference solution of
    01_layers with ``code`` added as a cell after the first solution, graded by the worker with its Slot."""
    import nbformat

    from autograder.grade import gradebook_io
    from autograder.grade.nbgrader_server import start_nbgrader_server
    from autograder.grade.worker import Job, grade_one
    from autograder.judge.launch import Judge
    from tests.support.adversarial import Attack, build, full
    from tests.support.grading import new_course

    start_nbgrader_server()
    folder = tmp_path_factory.mktemp("output-caps")
    course = new_course(folder / "course", "01_layers")
    cells = gradebook_io.graded_cells(course, "01_layers")

    def run(name, code):
        attack = Attack(name, name, full(), after=[("count_params_solution", code)])
        notebook = folder / "in" / name / "01_layers.ipynb"
        notebook.parent.mkdir(parents=True)
        notebook.write_bytes(build(attack, {"course": str(course), "home_canary": "", "port": 0}))
        limits = Limits(cell_s=120, notebook_s=600)
        job = Job(name, "01_layers", course, course / "gradebook.db", notebook, limits, cells)
        slot = Slot(folder, limits)
        judge = Judge()
        try:
            result = grade_one(job, slot, judge)
        finally:
            judge.close()
        path = Path(result.autograded, "01_layers.ipynb") if result.autograded else None
        return (result, nbformat.read(path, as_version=4) if path else None,
                (slot.ws / "nbgrader.log").read_text())

    return run


def _peak_mib(log):
    return int(log.split("[grader] nbgrader peak RSS: ")[1].split()[0])


def _index_of(nb, code):
    return next(i for i, c in enumerate(nb.cells)
                if c.cell_type == "code" and c.source.strip() == code.strip())


def _outputs_of(nb, code):
    return nb.cells[_index_of(nb, code)].outputs


def test_a_1_gib_flood_costs_nbgrader_little_and_is_noted(grade):
    """1 GiB printed in 1 MiB messages (nbgrader held 1.3 GiB of it before the caps): nbgrader's process peaks
    under 250 MiB, the cell keeps at most its 4 MiB with a note of what was cut, and grading is unaffected."""
    result, nb, log = grade("flood", FLOOD)
    assert result.status == "graded" and not result.failed, result
    assert _peak_mib(log) < 250, log[-2000:]
    outputs = _outputs_of(nb, FLOOD)
    kept = sum(len(o.get("text", "")) for o in outputs if o.output_type == "stream")
    assert kept <= 4 * MiB
    note = outputs[-1]["data"]["text/plain"]
    assert (note.startswith("The grader did not keep all of this cell's output")
            and "past the limit of 4.0 MiB" in note)


def test_a_message_over_the_cap_is_dropped_and_later_cells_keep_their_output(grade):
    """One 256 MiB message is never read (ZMQ_MAXMSGSIZE drops the connection; the grader connects again): the
    cell says so, every later cell still has its output, and nbgrader never held the message (about 100 MiB at
    its peak, as for any notebook; reading it would have taken several times 256 MiB)."""
    result, nb, log = grade("big_message", ONE_BIG_MESSAGE)
    assert result.status == "graded" and not result.failed, result
    assert _peak_mib(log) < 200, log[-2000:]
    outputs = _outputs_of(nb, ONE_BIG_MESSAGE)
    assert not any(o.output_type == "stream" for o in outputs)
    assert "1 message(s) over 8.0 MiB" in outputs[-1]["data"]["text/plain"]
    later = [c for c in nb.cells[_index_of(nb, ONE_BIG_MESSAGE) + 1:]
             if c.cell_type == "code" and "print(" in c.source]
    assert later and all(any(o.output_type == "stream" for o in c.outputs) for c in later)


@ROOT_ONLY
def test_a_message_of_many_parts_meets_nbgrader_s_own_memory_limit(grade):
    """384 parts of 4 MiB in one message: each part passes the cap, and libzmq reads a message whole. The
    nbgrader process's cgroup ends it at 1 GiB, and the submission is reported as crashed, saying why."""
    _needs_cgroup()
    result, _, _ = grade("many_parts", MANY_PARTS)
    assert result.status == "crashed", result
    assert "grader's nbgrader process reach its memory limit" in result.reason
