"""nbgrader's Execute step with every graded test cell run by the judge (``autograder.judge.process``), not
the kernel.

Solution and given cells run in the sandboxed kernel as nbgrader runs them. A test cell (graded, not a
solution) is sent to the judge with the *gradebook's* source of that test, never the cell's text (a test cell
the student deleted comes back from nbgrader's ``OverwriteCells`` with a comment in front of it, and an edited
locked cell has been overwritten already; either way the test that runs is exactly the instructor's). The
judge answers whether it passed, what it printed and the error; this step writes those as the cell's outputs,
as IPython would, so nbgrader's own grading and feedback read them as usual, and appends each outcome to
``results_path`` for the worker (``autograder.grade.policy.decide``), which keeps the scores of tests that ran
even when the kernel dies later. A cell that claims test metadata for a grade_id the gradebook does not hold
runs as an ordinary cell. Used by the grading worker through ``c.Autograde.autograde_preprocessors``; never by
plain nbgrader.

The judge reaches the kernel through the Unix socket ``judge.sock`` that the kernel listens on in its runtime
folder (``autograder.judge.kernel_server``): this process connects (refusing anything but a socket whose peer
is the sandbox's own user, so a link the student planted cannot point it at another student's kernel or the
judge) and hands the connected socket to the judge with SCM_RIGHTS, once per notebook.

It also bounds what a submission's output costs this trusted process, which nbclient would otherwise hold
whole (a cell printing 1 GiB: 1.3 GiB resident here before nbgrader's LimitOutput cut it):

- each cell keeps at most ``output_cap`` bytes of outputs (and comm messages, which nbclient stores too), the
  notebook at most ``notebook_output_cap``; what comes after is dropped as it arrives, and the cell gets one
  note saying how much (an error output is still kept once, shortened, so that a failure stays visible);
- no ZeroMQ message part over ``message_cap`` bytes is read at all (ZMQ_MAXMSGSIZE on every socket of the
  kernel manager and its client), and no more than RECEIVE_QUEUE messages wait unread: libzmq drops the
  connection to a larger message instead of reading it, then reconnects, so that message and what the kernel
  sent meanwhile are lost (the cell's note says so). A message of many parts, each under the cap, is still
  read whole: the process's own memory limit (``autograder.sandbox.policy.NBGRADER_MEMORY``) stops that;
- a cell whose last message (the kernel's "idle") was lost that way, or dropped by the kernel's own queue in a
  flood, ends after nbclient's ``iopub_timeout`` with a note, instead of failing the whole notebook as
  nbgrader's ``raise_on_iopub_timeout`` would. That costs no safety: test cells' outputs come from the judge.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
from jupyter_client.manager import AsyncKernelManager
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer, Unicode, default
from zmq.utils.monitor import parse_monitor_message

from course.cells import is_given_cell, is_test_cell

if TYPE_CHECKING:
    from collections.abc import Container
    from typing import Any

    from jupyter_client.asynchronous.client import AsyncKernelClient
    from jupyter_client.channels import ZMQSocketChannel
    from jupyter_client.manager import KernelManager
    from nbformat import NotebookNode

MiB = 1024 * 1024
RECEIVE_QUEUE = 8  # messages libzmq may hold for a socket before its reader takes them
# an error output kept past the cap: its traceback and value shortened to this many bytes
ERROR_KEPT = 64 * 1024


def gradebook_tests(db_url: str, notebook: str, assignment: str) -> dict[str, str]:
    """{grade_id: source} of every autograder test cell of ``notebook`` in ``assignment``,
    from the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    out = {}
    with Gradebook(db_url) as gb:
        for cell in gb.find_notebook(notebook, assignment).grade_cells:
            if cell.cell_type != "code":
                continue
            try:
                gb.find_solution_cell(cell.name, notebook, assignment)
                continue  # an autograded answer, not a test
            except MissingEntry:
                pass
            out[cell.name] = gb.find_source_cell(cell.name, notebook, assignment).source
    return out


def source_preambles(path: str | os.PathLike[str], tests: Container[str]) -> dict[str, list[str]]:
    """{grade_id: the definitions (``autograder.judge.process.definitions``) of the given cells above that
    test} in the instructor's source notebook at ``path``; {} when there is none (each test then runs on its
    own)."""
    import nbformat

    from autograder.judge.process import definitions, names_used

    if not Path(path).is_file():
        return {}
    nb = nbformat.read(path, as_version=4)
    out, given = {}, []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade_id") in tests and is_test_cell(cell):
            defs = definitions(given, used=set())
            used = names_used([cell.source, *defs])
            out[meta["grade_id"]] = definitions(given, used)
        elif is_given_cell(cell):
            given.append(cell.source)
    return out


def _nbytes(value: object) -> int:
    """About how many bytes ``value`` (a message's content: dicts, lists, strings, buffers) takes."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    if isinstance(value, dict):
        return sum(len(str(k)) + _nbytes(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 8


def _mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB / 10 else f"{n:,} bytes"


class CappedKernelManager(AsyncKernelManager):
    """nbclient's kernel manager, whose sockets and whose clients' sockets (the heartbeat's too) never read a
    message part over ``max_message`` bytes: the ZeroMQ contexts set ZMQ_MAXMSGSIZE on every socket
    they make."""

    max_message = Integer(8 * MiB)

    def cap(self, context: zmq.Context) -> None:
        """Every socket ``context`` makes from now on reads no message part over ``max_message`` bytes, and
        queues at most RECEIVE_QUEUE messages not yet read (libzmq's default, 1000, is 8 GiB of 8 MiB
        messages): past that, libzmq stops reading the socket, so that the kernel's side waits
        (in its own memory)."""
        context.setsockopt(zmq.MAXMSGSIZE, self.max_message)
        context.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE)

    def client(self, **kwargs: Any) -> AsyncKernelClient:
        kc = super().client(**kwargs)
        self.cap(kc.context)  # its channels are made later, by start_channels
        kc.iopub_channel_class = _watched_channel(kc.iopub_channel_class)
        kc.shell_channel_class = _watched_channel(kc.shell_channel_class)
        return kc


def _watched_channel(base: type[ZMQSocketChannel]) -> type[ZMQSocketChannel]:
    """A client channel class (IOPub, shell) that notices when libzmq dropped its connection (a message part
    over the cap: the kernel is local, nothing else drops it) and connects again. libzmq does not reconnect
    after such a protocol error by itself: without this, no later cell would get its output."""

    class WatchedChannel(base):
        def __init__(self, socket: zmq.Socket, *args: Any, **kwargs: Any) -> None:
            super().__init__(socket, *args, **kwargs)
            self.dropped = 0
            self._monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
            # The same socket seen synchronously: read between cells without an event loop. The context that
            # made the monitor closes it (it tracks it); the view owns nothing.
            self._events = zmq.Socket.shadow(self._monitor.underlying)

        def _next_event(self, timeout_ms: int = 0) -> dict[str, Any] | None:
            if self._monitor.closed or not self._events.poll(timeout_ms):
                return None
            return parse_monitor_message(self._events.recv_multipart())

        def drain_drops(self) -> int:
            """How many times the connection was dropped so far; connects again after a drop."""
            endpoints = set()
            while (event := self._next_event()) is not None:
                if event["event"] == zmq.EVENT_DISCONNECTED:
                    self.dropped += 1
                    endpoints.add(event["endpoint"].decode())
            for endpoint in endpoints:
                self.socket.disconnect(endpoint)
                self.socket.connect(endpoint)
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:  # connected again before the next cell is sent
                    event = self._next_event(100)
                    if event is not None and event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                        break
                time.sleep(0.05)  # a SUB socket's subscription reaches the kernel just after the handshake
            return self.dropped

        def close(self) -> None:
            if not self._monitor.closed:
                try:
                    self.socket.disable_monitor()
                except (zmq.ZMQError, AttributeError):
                    pass
                self._monitor.close(linger=0)
            super().close()

    return WatchedChannel


class JudgedExecute(Execute):
    judge_socket = Unicode(help="the judge's Unix socket (autograder.judge.launch)").tag(config=True)
    runtime_dir = Unicode(help="the kernel's runtime folder, where it listens for the judge").tag(config=True)
    kernel_uid = Integer(-1, help="the sandbox's private uid (-1: not checked, grading without root)"
                         ).tag(config=True)
    results_path = Unicode(help="where each test's outcome is appended, one JSON line each").tag(config=True)
    test_seconds = Integer(60, help="how long one test cell may take, calls into the kernel included"
                           ).tag(config=True)
    output_cap = Integer(4 * MiB, help="bytes of one cell's outputs kept; later ones are dropped"
                         ).tag(config=True)
    notebook_output_cap = Integer(help="bytes of all the notebook's outputs kept").tag(config=True)
    message_cap = Integer(help="largest ZeroMQ message part read from the kernel (ZMQ_MAXMSGSIZE)"
                          ).tag(config=True)
    raise_on_iopub_timeout = Bool(False, help="fail the notebook when a cell's output does not end: no "
                                  "(a note)").tag(config=True)

    @default("notebook_output_cap")
    def _notebook_output_cap_default(self) -> int:
        return 4 * self.output_cap

    @default("message_cap")
    def _message_cap_default(self) -> int:
        return 2 * self.output_cap

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("kernel_manager_class", CappedKernelManager)
        super().__init__(*args, **kwargs)

    def create_kernel_manager(self) -> KernelManager:
        km = super().create_kernel_manager()
        if isinstance(km, CappedKernelManager):
            km.max_message = self.message_cap
            km.cap(km.context)  # before start_kernel makes its control socket
        return km

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any], *args: Any,
                   **kwargs: Any) -> tuple[NotebookNode, dict[str, Any]]:
        info = resources["nbgrader"]
        self.gradebook_tests = gradebook_tests(info["db_url"], info["notebook"], info["assignment"])
        self.preambles = source_preambles(Path(info["db_url"].replace("sqlite:///", "")).parent / "source"
                                          / info["assignment"] / f"{info['notebook']}.ipynb",
                                          self.gradebook_tests)
        self._notebook_kept = 0
        self._judge = None
        try:
            return super().preprocess(nb, resources, *args, **kwargs)
        finally:
            if self._judge is not None:
                self._judge.close()

    def preprocess_cell(self, cell: NotebookNode, resources: dict[str, Any],
                        index: int) -> tuple[NotebookNode, dict[str, Any]]:
        if cell.cell_type != "code":
            return super().preprocess_cell(cell, resources, index)
        self._cell = {"kept": 0, "cut": 0, "parts": 0, "error_past_cap": False, "seen": False, "idle": False}
        dropped = self._dropped_connections()
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if is_test_cell(cell) and grade_id in self.gradebook_tests:
            return self._judged(cell, grade_id), resources
        try:
            result = super().preprocess_cell(cell, resources, index)
        except BaseException:  # a dead kernel drops its connections too: no message is blamed for that
            self._note_cuts(cell, None)
            raise
        self._note_cuts(cell, self._dropped_connections() - dropped)
        return result

    def _connect_judge(self) -> socket.socket:
        """Connect to the kernel's judge socket (its peer checked) and hand it to the judge; returns the
        judge's connection. Raises OSError with what went wrong."""
        path = os.path.join(self.runtime_dir, "judge.sock")
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"{path} is not a socket")
        kernel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            kernel.settimeout(10)
            kernel.connect(path)
            _, uid, _ = struct.unpack("3i", kernel.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
            if self.kernel_uid >= 0 and uid != self.kernel_uid:
                raise OSError(f"the socket in the runtime folder belongs to uid {uid}, not the sandbox's")
            judge = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            judge.settimeout(30)
            judge.connect(self.judge_socket)
            socket.send_fds(judge, [b"kernel"], [kernel.fileno()])
            return judge
        finally:
            kernel.close()  # the judge holds its own copy now

    def _judged(self, cell: NotebookNode, grade_id: str) -> NotebookNode:
        """Run test ``grade_id`` in the judge; the cell's outputs say what happened, as IPython would."""
        from autograder.judge.wire import Limits, PeerGone, ProtocolError, recv_frame, send_frame

        cell.outputs = []
        cell.execution_count = None
        result, judge_failed, start = None, False, time.monotonic()
        try:
            if self._judge is None:
                self._judge = self._connect_judge()
            send_frame(self._judge, {"op": "test", "grade_id": grade_id,
                                     "source": self.gradebook_tests[grade_id], "seconds": self.test_seconds,
                                     "preamble": self.preambles.get(grade_id, [])})
            result, _ = recv_frame(self._judge, Limits(bytes=16 * MiB),
                                   deadline=time.monotonic() + self.test_seconds + 30)
        except (OSError, PeerGone, ProtocolError) as err:
            judge_failed = True
            why = f"the grader could not run this test ({type(err).__name__}: {err})"
            result = {"passed": False, "ename": "GraderError", "evalue": why, "traceback": [why],
                      "stdout": ""}
            if self._judge is not None:
                self._judge.close()
                self._judge = None
        if result.get("stdout"):
            cell.outputs.append(new_output("stream", name="stdout", text=str(result["stdout"])))
        if not result.get("passed"):
            cell.outputs.append(new_output("error", ename=str(result.get("ename", "")),
                                           evalue=str(result.get("evalue", "")),
                                           traceback=[str(line) for line in result.get("traceback", [])]))
        why = "" if result.get("passed") else f"{result.get('ename')}: {result.get('evalue')}"[:2000]
        with open(self.results_path, "a") as out:
            out.write(json.dumps({"grade_id": grade_id, "passed": bool(result.get("passed")), "why": why,
                                  "grader_error": judge_failed,
                                  "seconds": round(time.monotonic() - start, 3)}) + "\n")
        return cell

    def _dropped_connections(self) -> int:
        """Connections to the kernel dropped so far (each: a message over ``message_cap``),
        connected again."""
        kc = getattr(self, "kc", None)
        channels = [getattr(kc, "_iopub_channel", None), getattr(kc, "_shell_channel", None)]
        return sum(channel.drain_drops() for channel in channels if hasattr(channel, "drain_drops"))

    def _note_cuts(self, cell: NotebookNode, dropped: int | None) -> None:
        state = self._cell
        # A cell nbclient did not run (empty, or tagged to skip) has no messages at all:
        # nothing unfinished there.
        unfinished = state["seen"] and not state["idle"] and dropped is not None
        if not (state["cut"] or dropped or unfinished):
            return
        what = []
        if state["cut"]:
            what.append(f"{_mib(state['cut'])} in {state['parts']} messages past the limit of "
                        f"{_mib(self.output_cap)} a cell ({_mib(self.notebook_output_cap)} a notebook)")
        if dropped:
            what.append(f"{dropped} message(s) over {_mib(self.message_cap)} each, with what the kernel sent "
                        "while reconnecting")
        if unfinished:
            what.append(f"the end of the output, which had not come {self.iopub_timeout} s after the cell "
                        "finished")
        text = "The grader did not keep all of this cell's output: it dropped " + "; and ".join(what) + "."
        # display_data, not a stream: nbgrader's LimitOutput trims streams to their first lines, this stays.
        cell.outputs.append(new_output("display_data", data={"text/plain": text}))

    def process_message(self, msg: dict[str, Any], cell: NotebookNode,
                        cell_index: int) -> NotebookNode | None:
        msg_type = msg["msg_type"]
        if hasattr(self, "_cell"):
            self._cell["seen"] = True
            if msg_type == "status" and msg["content"].get("execution_state") == "idle":
                self._cell["idle"] = True
        if msg_type in ("status", "execute_input", "clear_output") or not hasattr(self, "_cell"):
            return super().process_message(msg, cell, cell_index)  # nothing of these is kept
        size = _nbytes(msg["content"]) + sum(_nbytes(b) for b in msg.get("buffers") or ())
        state = self._cell
        if state["kept"] + size <= self.output_cap and self._notebook_kept + size <= self.notebook_output_cap:
            state["kept"] += size
            self._notebook_kept += size
            return super().process_message(msg, cell, cell_index)
        if msg_type == "error" and not state["error_past_cap"]:
            state["error_past_cap"] = True  # a failure stays visible; ERROR_KEPT bytes at most
            content = msg["content"]
            content["evalue"] = str(content.get("evalue", ""))[: ERROR_KEPT // 4]
            traceback, kept = [], 0
            for line in content.get("traceback") or []:
                line = str(line)[: ERROR_KEPT // 4]
                if kept + len(line) > ERROR_KEPT:
                    traceback.append("... (the grader cut the rest of this traceback)")
                    break
                traceback.append(line)
                kept += len(line)
            content["traceback"] = traceback
            return super().process_message(msg, cell, cell_index)
        state["cut"] += size
        state["parts"] += 1
        return None
