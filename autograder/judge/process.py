"""The judge: runs a notebook's test cells, visible and hidden, in a process of its own, never student code.

PrairieLearn's design (its Python grader keeps the test harness and the student's code in separate processes):
the student's cells run in the sandboxed kernel; each test cell runs here, in a fresh namespace, with the
instructor's source from the gradebook. A name the test does not define is looked up in the kernel
(``autograder.judge.kernel_server``): a class, function or module from a trusted package (torch, the course,
...) is imported here, the judge's own copy; data comes by value; the student's functions come as handles, and
calling one sends its arguments by value and applies what the call changed to the judge's own objects
(``autograder.judge.wire``). So assertions run on the judge's objects with the judge's torch, builtins and
``AssertionError``; what the kernel can do to a test is answer its calls with data, which is what its
functions are for.

``python -m autograder.judge.process SOCKET``: listen on the Unix socket SOCKET (in the judge's sandbox,
started by ``autograder.judge.launch``). The grader's nbgrader process (``autograder.judge.judged_execute``)
connects once per notebook and sends the kernel's connected socket with SCM_RIGHTS, then one request per test
cell: ``{"op": "test", "grade_id", "source", "seconds", "preamble"}``, answered ``{"passed", "ename",
"evalue", "traceback", "stdout"}``.

The preamble (``definitions``) is what the instructor's own notebook binds before the test: its imports from
trusted packages and the functions and classes its given cells define, taken from the *source* notebook, never
the student's copy. A test's fixtures (``tiny_cnn``, ``TiedLM``, a loader that records snapshots) are thus the
instructor's, even when the student rebinds those names in the kernel; only the names the preamble and the
test leave undefined (the student's answers) are looked up in the kernel.
"""
import ast
import builtins
import contextlib
import io
import linecache
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING

from autograder.judge.wire import Limits, Peer, PeerGone, ProtocolError, Registry, recv_frame, send_frame

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from types import FrameType
    from typing import Any

OUTPUT_KEPT = 256 * 1024
PRELOAD = ("torch", "numpy")  # what every test needs; the rest is imported when a preamble asks for it


class KernelUnavailable(BaseException):
    """The kernel died or stopped answering: no test that runs after this can pass. A BaseException, so that a
    test's own ``except Exception`` does not swallow it."""


class TestTimeout(BaseException):
    """The test itself (a loop in the instructor's code, a callback) ran past its time: a BaseException, so
    that a test's ``except Exception`` does not swallow it."""


def _on_alarm(signum: int, frame: "FrameType | None") -> None:
    raise TestTimeout("the test ran past its time limit")


class TestNamespace(dict):
    """A test cell's globals: what the test defines, then builtins, then the kernel's names
    (looked up once)."""

    def __init__(self, peer: Peer | None) -> None:
        super().__init__()
        self.peer = peer

    def __missing__(self, name: str) -> "Any":
        if name in builtins.__dict__ or name.startswith("__"):
            raise KeyError(name)
        found, value = _lookup(self.peer, name)
        if not found:
            raise KeyError(name)
        self[name] = value
        return value


def _lookup(peer: Peer, name: str) -> "tuple[bool, Any]":
    answer = peer.request("lookup", name=name)
    if not (isinstance(answer, tuple) and len(answer) == 2 and type(answer[0]) is bool):
        raise ProtocolError("the kernel answered a lookup with something other than (found, value)")
    return answer


class Judge:
    """Runs test cells against one kernel connection (one notebook)."""

    def __init__(self, kernel_sock: socket.socket, limits: Limits | None = None) -> None:
        self.sock = kernel_sock
        self.registry = Registry("j")
        self.limits = limits or Limits()
        # why the kernel can no longer be asked (set by the first failure of the connection)
        self.broken = None

    def run_test(self, grade_id: str, source: str, seconds: float,
                 preamble: "Iterable[str]" = ()) -> dict[str, object]:
        """Run one test cell after the ``preamble`` statements (``definitions``); returns {"passed", "ename",
        "evalue", "traceback", "stdout"}."""
        out = io.StringIO()
        result = {"passed": False, "ename": "", "evalue": "", "traceback": [], "stdout": ""}
        if self.broken:
            result.update(ename="KernelUnavailable", evalue=self.broken,
                          traceback=[f"KernelUnavailable: {self.broken}"])
            return result
        self.registry.clear()
        ns = TestNamespace(None)
        peer = Peer(self.sock, self.registry, judge=True, handlers={"callback": self._callback},
                    limits=self.limits, deadline=time.monotonic() + seconds, namespace=lambda: ns)
        ns.peer = peer
        ns["__name__"] = "__main__"
        filename = f"<test {grade_id}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        alarm = threading.current_thread() is threading.main_thread()
        if alarm:  # the socket's deadline bounds waiting for the kernel; this bounds the judge's own work
            previous = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, seconds + 5)
        try:
            code = compile(source, filename, "exec")
            with contextlib.redirect_stdout(out):
                peer.request("reset")
                _run_preamble(preamble, ns)
                exec(code, ns)  # noqa: S102  (the instructor's test, from the gradebook)
            result["passed"] = True
        except (PeerGone, ProtocolError) as err:
            why = (f"the kernel sent data the judge refuses: {err}" if isinstance(err, ProtocolError)
                   else f"the kernel did not answer: {err}")
            self.broken = f"an earlier test ({grade_id}) lost the kernel: {why}"
            result.update(ename=type(err).__name__, evalue=why, traceback=[f"{type(err).__name__}: {why}"])
        except BaseException as err:  # noqa: BLE001  (a failed test, whatever it raised)
            if isinstance(err, KeyboardInterrupt):
                raise
            if isinstance(err, TestTimeout):
                # possibly in the middle of a message: the kernel is not asked again
                self.broken = f"an earlier test ({grade_id}) ran past its time limit"
            result.update(ename=type(err).__name__, evalue=str(err)[:4000],
                          traceback=_traceback(err, filename))
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        result["stdout"] = out.getvalue()[:OUTPUT_KEPT]
        return result

    def _callback(self, target: "Any", args: "Sequence[Any]" = (),
                  kwargs: "dict[str, Any] | None" = None) -> "tuple[Any, str]":
        """The kernel calls a function the test passed (a lambda): run it here with the arguments,
        by value."""
        if not callable(target):
            raise ProtocolError("a callback to something that is not a function of the test")
        return target(*args, **(kwargs or {})), ""


_compiled = {}


def _run_preamble(statements: "Iterable[str]", ns: TestNamespace) -> None:
    """Run the instructor's definitions in the test's namespace; one that fails (a package this machine lacks)
    is left out, and its name is then looked up in the kernel like any other."""
    for text in statements:
        code = _compiled.get(text)
        if code is None:
            code = _compiled[text] = compile(text, "<instructor's notebook>", "exec")
        try:
            exec(code, ns)  # noqa: S102  (the instructor's source notebook)
        except Exception as err:  # noqa: BLE001
            print(f"[judge] preamble statement failed ({type(err).__name__}: {err}): {text[:80]!r}",
                  file=sys.stderr)


def definitions(cells: "Iterable[str]", used: set[str] | None = None) -> list[str]:
    """The statements of the instructor's given cells ``cells`` (sources, in order) that the judge runs before
    a test: imports from trusted packages (``autograder.judge.wire.TRUSTED``), and function and class
    definitions. Nothing else: no call, no assignment, so that the preamble costs microseconds and runs no
    training.
    used: the names the test and these definitions use (``names_used``); an import that binds none of them is
    left out (``from course.plots import ...`` would import matplotlib for nothing).
    None: keep every import."""
    from IPython.core.inputtransformer2 import TransformerManager

    from autograder.judge.wire import trusted_module

    out, transform = [], TransformerManager().transform_cell
    for source in cells:
        try:
            text = transform(source)
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                keep = all(trusted_module(a.name) for a in node.names) and _binds(node, used)
            elif isinstance(node, ast.ImportFrom):
                keep = node.level == 0 and trusted_module(node.module) and _binds(node, used)
            else:
                keep = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if keep:
                out.append(ast.get_source_segment(text, node))
    return out


def _binds(node: ast.Import | ast.ImportFrom, used: set[str] | None) -> bool:
    if used is None:
        return True
    return any((a.asname or a.name.split(".")[0]) in used for a in node.names)


def names_used(sources: "Iterable[str]") -> set[str]:
    """Every name read or attribute's root in ``sources`` (Python texts; IPython's syntax is transformed)."""
    from IPython.core.inputtransformer2 import TransformerManager

    out, transform = set(), TransformerManager().transform_cell
    for source in sources:
        try:
            tree = ast.parse(transform(source))
        except (SyntaxError, ValueError):
            continue
        out.update(n.id for n in ast.walk(tree) if isinstance(n, ast.Name))
    return out


def _traceback(err: BaseException, filename: str) -> list[str]:
    """The failure as a student reads it: the test's own lines and the error (the kernel's traceback when the
    student's code raised it)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == filename]
    lines = ["Traceback (most recent call last):"]
    lines += [f'  Test cell, line {f.lineno}\n    {f.line}' for f in frames]
    kernel_tb = getattr(err, "kernel_traceback", "")
    if kernel_tb:
        lines.append("In the notebook's code:\n" + kernel_tb.rstrip())
    lines.append(f"{type(err).__name__}: {err}")
    return lines


def serve(path: str) -> None:
    """Listen on ``path``; one notebook (connection) at a time. The socket listens before torch is
    imported, so that the grader's first connection waits in the queue while the import finishes, not
    before it starts."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    print("ready", flush=True)
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    while True:
        conn, _ = listener.accept()
        try:
            serve_notebook(conn)
        except (PeerGone, ProtocolError, OSError) as err:
            print(f"[judge] notebook connection ended: {err}", file=sys.stderr, flush=True)
        finally:
            conn.close()


def serve_notebook(conn: socket.socket) -> None:
    """One notebook: the first message brings the kernel's socket, each later one a test cell to run."""
    msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
    if not fds or not msg.startswith(b"kernel"):
        raise ProtocolError("the first message must carry the kernel's socket")
    kernel = socket.socket(fileno=fds[0])
    kernel.setblocking(True)
    judge = Judge(kernel)
    trusted = Limits(bytes=64 * 1024 * 1024)
    try:
        while True:
            try:
                request, _ = recv_frame(conn, trusted)
            except PeerGone:
                return
            if request.get("op") != "test":
                raise ProtocolError(f"unknown request {request.get('op')!r}")
            result = judge.run_test(str(request["grade_id"]), str(request["source"]),
                                    float(request["seconds"]), [str(t) for t in request.get("preamble", [])])
            send_frame(conn, result)
    finally:
        kernel.close()


def main(argv: list[str] | None = None) -> None:
    args = argv or sys.argv[1:]
    sys.setrecursionlimit(10_000)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    serve(args[0])


if __name__ == "__main__":
    main()
