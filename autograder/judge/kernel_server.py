"""The kernel's side of the judge's boundary (``autograder.judge.wire``): answers the judge's requests about
the notebook.

Runs in the grading kernel, in a thread started by ``autograder.judge.kernel_boot`` before any student code,
listening on a Unix socket in the kernel's runtime folder. While the judge runs a test cell the kernel runs no
cell, so the student's functions run in this thread with the notebook's namespace. Nothing here is trusted:
student code can replace or stop all of it, and all it gains is to answer the judge's questions itself, with
data, which is what its functions do anyway. The judge checks every answer (``autograder.judge.wire.Codec``
with ``judge=True``).

Requests: ``reset`` (a new test: forget the mirrored objects), ``lookup`` (a name of the notebook), ``call``,
``getattr``, ``setattr``, ``iter``, ``next``, ``len``, ``getitem``. Each answer carries what the call printed.
"""
from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
import threading
from typing import TYPE_CHECKING

from autograder.judge.wire import Limits, Peer, Registry

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

SOCKET_NAME = "judge.sock"
OUTPUT_KEPT = 64 * 1024  # characters of a call's printed output sent with its answer


def namespace() -> dict[str, Any]:
    """The notebook's namespace: IPython's user namespace in a kernel, ``__main__`` elsewhere."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            return shell.user_ns
    except ImportError:
        pass
    return vars(sys.modules["__main__"])


def _captured(fn: Callable[[], Any]) -> tuple[Any, str]:
    """Run ``fn()``, its printed output captured; returns (value, output)."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            value = fn()
    except BaseException as err:
        err._out = buf.getvalue()[:OUTPUT_KEPT]
        raise
    return value, buf.getvalue()[:OUTPUT_KEPT]


def handlers(registry: Registry,
             ns: Callable[[], dict[str, Any]] = namespace) -> dict[str, Callable[..., tuple[Any, str]]]:
    def reset() -> tuple[None, str]:
        registry.clear()
        return None, ""

    def lookup(name: object) -> tuple[tuple[bool, Any], str]:
        table = ns()
        if not isinstance(name, str) or name not in table:
            return (False, None), ""
        return (True, table[name]), ""

    def call(target: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> tuple[Any, str]:
        return _captured(lambda: target(*args, **(kwargs or {})))

    def getattr_(target: Any, name: str) -> tuple[Any, str]:
        return _captured(lambda: getattr(target, name))

    def setattr_(target: Any, name: str, value: Any) -> tuple[Any, str]:
        return _captured(lambda: setattr(target, name, value))

    def iter_(target: Any) -> tuple[Any, str]:
        return _captured(lambda: iter(target))

    def next_(target: Any) -> tuple[Any, str]:
        def step() -> tuple[bool, Any]:
            try:
                return True, next(target)
            except StopIteration:
                return False, None
        return _captured(step)

    def len_(target: Any) -> tuple[Any, str]:
        return _captured(lambda: len(target))

    def getitem(target: Any, key: Any) -> tuple[Any, str]:
        return _captured(lambda: target[key])

    return {"reset": reset, "lookup": lookup, "call": call, "getattr": getattr_, "setattr": setattr_,
            "iter": iter_, "next": next_, "len": len_, "getitem": getitem}


def serve_connection(conn: socket.socket, ns: Callable[[], dict[str, Any]] = namespace) -> None:
    """Answer one judge's requests on ``conn`` until it closes; the kernel's limits are generous (the judge is
    trusted), but bounded all the same."""
    registry = Registry("k")
    peer = Peer(conn, registry, judge=False, handlers=handlers(registry, ns), namespace=ns,
                limits=Limits(bytes=2**33, depth=64, values=10**8, blobs=10**6))
    try:
        peer.serve()
    finally:
        conn.close()


def start(folder: str, ns: Callable[[], dict[str, Any]] = namespace) -> threading.Thread:
    """Listen on ``folder/judge.sock`` in a daemon thread; one connection at a time. Returns the thread."""
    path = os.path.join(folder, SOCKET_NAME)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def loop() -> None:
        while True:
            conn, _ = listener.accept()
            try:
                serve_connection(conn, ns)
            except Exception as err:  # noqa: BLE001  (the judge reports what it got; keep listening)
                print(f"[judge connection] {type(err).__name__}: {err}", file=sys.__stderr__)

    thread = threading.Thread(target=loop, name="judge-server", daemon=True)
    thread.start()
    return thread
