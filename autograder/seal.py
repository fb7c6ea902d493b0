"""The grading kernel's trusted bootstrap: runs inside the sandbox before any student code, then starts ipykernel.

Why: nbgrader runs the test cells in the student's own Python process, so a submission can patch what the
tests use (``torch.allclose = lambda *a, **k: True``, ``Tensor.__eq__``, builtins, the course package, IPython's
traceback display) and pass. Nothing inside one process can be made tamper-proof, but tampering can be made
*visible* to a grader outside it. Before student code runs, this module:

1. reads a signing key from a pipe (see ``autograder.records``) and seeds every generator (determinism);
2. imports the modules the tests use and *seals* them: it keeps a reference to every attribute of those
   modules, of the classes tests rely on (``torch.Tensor``, ``nn.Module``, ...) and, when the first cell
   arrives, of ``builtins``;
3. installs an audit hook (PEP 578; Python code cannot remove one) that
   - before every notebook cell compares the sealed classes with what is there now (identity only, no
     student code runs during the check) and writes a signed ``cell`` record naming changed classes (these
     zero later tests) and patched module attributes or builtins (reported only: tests never see them),
     and removes a ``__grader_test__`` that student code defined to shadow the real one,
   - writes a signed ``tamper`` record the moment student code reaches for the tools that could reach into
     this module or rewrite memory: ``ctypes``, ``gc.get_referrers/get_referents/get_objects``,
     ``sys.settrace/setprofile``, ``sys._current_frames``, ``sys.addaudithook``, assigning ``__code__``,
     opening ``/proc/*/mem``;
4. defines ``__grader_test__(source, grade_id)``, which the grader sends in place of each graded test cell:
   it checks the seal, runs the test's source with the *sealed* modules and a fresh copy of the sealed
   builtins (so a module attribute patched even for a moment does not reach the test's own lookups),
   checks the seal again, and writes a signed ``test`` record saying whether the test passed.

A test cell earns points only with a signed ``test`` record that it passed and no tamper record before it
(``autograder.worker``). What this does not stop, on purpose documented in README: a patch of a sealed class
(``Tensor.__eq__``) that undoes itself before the seal is next checked, reached without any audited event.
"""
import builtins
import os
import sys
import types

TEST_FILENAME = "<graded test>"
WATCHED_MODULES = (
    "math", "numpy", "torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.optim",
    "torch.testing", "torch.utils.data", "course",
)
WATCHED_CLASSES = (
    "torch.Tensor", "torch.nn.Module", "torch.nn.Parameter", "torch.optim.Optimizer", "torch.nn.modules.batchnorm._BatchNorm",
)
# Module-level names a test cell may use for a watched module (as the notebooks import them).
ALIASES = {"torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional", "np": "numpy", "numpy": "numpy",
           "math": "math", "course": "course"}
KERNEL_OWNED = {"_", "__", "___", "input"}  # builtins ipykernel itself rebinds for every request
# Library loading that honest code does too (``import torchvision`` loads its extension with ctypes): reported to
# the instructor as information, never a reason to zero a test. Calling through ctypes is still ``ctypes.*``.
NOTICE_EVENTS = {"ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle"}
# Class attributes that Python itself adds as caches: ``copy``/``pickle`` store ``__slotnames__`` on every class
# they copy (``copy.deepcopy(tensor)``), so their appearance says nothing about student code.
CACHE_ATTRIBUTES = {"__slotnames__"}
TAMPER_EVENTS = {"gc.get_referrers", "gc.get_referents", "gc.get_objects", "sys.settrace", "sys.setprofile",
                 "sys._current_frames", "sys.addaudithook", "sys._getframemodulename"}


def _read_key(fd):
    """Everything written to pipe ``fd`` until its writer closes it (the key; a pre-started kernel's connection
    file)."""
    key = b""
    while True:
        chunk = os.read(fd, 64)
        if not chunk:
            break
        key += chunk
    os.close(fd)
    return key


def _seed(seed):
    import random

    import numpy
    import torch

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def install(key, record_fd, seed=0):
    """Seal the watched modules, install the audit hook and ``__grader_test__``; returns nothing.

    Everything the hook needs lives in this function's closure. Nothing here is reachable from student code
    except through the events the hook reports.
    """
    import importlib
    from _hashlib import hmac_digest, openssl_sha256

    import torch  # noqa: F401  (imported before sealing; also warms the kernel)

    _seed(seed)
    modules = {}
    for name in WATCHED_MODULES:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError:
            pass
    sys_modules = sys.modules
    sealed = {name: (mod, mod.__dict__, dict(mod.__dict__)) for name, mod in modules.items()}
    classes = {}
    for dotted in WATCHED_CLASSES:
        mod_name, _, cls_name = dotted.rpartition(".")
        cls = getattr(importlib.import_module(mod_name), cls_name)
        classes[dotted] = (cls, dict(cls.__dict__))
    builtins_dict = builtins.__dict__
    sealed_builtins = {}  # sealed when the first cell arrives: ipykernel sets its own builtins at start-up
    state = {"seq": 0, "shell": None, "last_cell": None, "armed": False}
    in_hook = set()  # thread ids inside the hook: its own calls (sys._getframe, ...) are not reported
    # Only C functions captured here are used to hash, sign and write: Python-level hmac, hashlib or json
    # can be patched by student code, to read the key or to rewrite a payload before it is signed.
    write, getframe, dict_get, ModuleType = os.write, sys._getframe, dict.get, types.ModuleType
    from _thread import get_ident

    def source_digest(source):
        """sha256 hex of a cell's source, as autograder.records.source_sha computes it outside."""
        return openssl_sha256(source.rstrip().encode()).hexdigest()

    def emit(kind, payload):
        body = f"{state['seq']} {kind} {payload!r}"  # format: autograder.records
        mac = hmac_digest(key, body.encode(), "sha256").hex()
        state["seq"] += 1
        try:
            write(record_fd, f"\n{body} {mac}\n".encode())
        except OSError:
            pass  # the fd was closed by student code: later records are missing, which earns nothing

    def changed_classes():
        """Sealed classes whose attributes are no longer the sealed ones (identity checks only).

        These reach a test however it is run (``a == b`` looks up ``Tensor.__eq__``), so they zero it."""
        out = []
        for dotted, (cls, frozen) in classes.items():
            live = cls.__dict__
            for attr, value in frozen.items():
                if live.get(attr, live) is not value and attr not in ("__doc__", "__annotations__"):
                    out.append(f"{dotted}.{attr} replaced")
            out += [f"{dotted}.{attr} added" for attr in live.keys() - frozen.keys() - CACHE_ATTRIBUTES
                    if attr.startswith("__") or not attr.startswith("_")]
        return out

    def patched():
        """Public names of sealed modules and builtins that now hold something else, and a shadowed runner.

        Reported to the instructor; tests are not affected, since they see the sealed values."""
        out = []
        for name, (mod, live, frozen) in sealed.items():
            if dict_get(sys_modules, name) is not mod:
                out.append(f"sys.modules[{name!r}] replaced")
            for attr, value in frozen.items():
                if not attr.startswith("_") and dict_get(live, attr, live) is not value:
                    wrapped = getattr(dict_get(live, attr), "__wrapped__", None) if attr in live else None
                    if wrapped is not value:  # torch wraps some of its own functions when a submodule loads
                        out.append(f"{name}.{attr} replaced")
        out += [f"builtins.{k} replaced" for k, v in sealed_builtins.items()
                if dict_get(builtins_dict, k, builtins_dict) is not v and k not in KERNEL_OWNED]
        if state.get("shadowed"):
            out.append("__grader_test__ shadowed or replaced (removed again before the next cell)")
        return out

    def is_cell(filename):
        return isinstance(filename, str) and ("ipykernel_" in filename or filename.startswith("<ipython-input"))

    def hook(event, args):
        me = get_ident()
        if me in in_hook:
            return
        in_hook.add(me)
        try:
            if event == "compile" and len(args) >= 2 and isinstance(args[0], (str, bytes)) and is_cell(args[1]):
                source = args[0].decode() if isinstance(args[0], bytes) else args[0]
                digest = source_digest(source)
                if not state["armed"]:
                    from IPython import get_ipython

                    state["armed"] = True  # from the first cell on, student code can run
                    sealed_builtins.update(builtins_dict)
                    state["shell"] = get_ipython()
                shell = state["shell"]
                if shell is not None and dict_get(shell.user_ns, "__grader_test__", __grader_test__) is not __grader_test__:
                    del shell.user_ns["__grader_test__"]  # a shadowing runner is removed before the cell runs
                    state["shadowed"] = True
                if dict_get(builtins_dict, "__grader_test__") is not __grader_test__:
                    builtins_dict["__grader_test__"] = __grader_test__
                    state["shadowed"] = True
                if digest != state["last_cell"]:
                    state["last_cell"] = digest
                    emit("cell", {"sha": digest, "changed": changed_classes()[:10], "patched": patched()[:10]})
            elif not state["armed"]:
                pass  # ipykernel's own start-up (its debugger calls sys.settrace, zmq uses ctypes)
            elif event in NOTICE_EVENTS:
                if event not in state.setdefault("noticed", set()):
                    state["noticed"].add(event)
                    emit("notice", {"event": event})
            elif event in TAMPER_EVENTS or event.startswith("ctypes."):
                emit("tamper", {"event": event})
            elif event == "object.__setattr__" and len(args) >= 2 and args[1] == "__code__":
                emit("tamper", {"event": "assigned __code__"})
            elif event == "open" and args and isinstance(args[0], str) and args[0].startswith("/proc/") and args[0].endswith("/mem"):
                emit("tamper", {"event": f"open {args[0]}"})
            elif event == "grader.test":
                caller = getframe(1)
                if caller.f_code is runner_code:
                    grade_id, digest, passed, why = args
                    emit("test", {"grade_id": grade_id, "sha": digest, "passed": passed, "why": why})
                else:
                    emit("tamper", {"event": "grader.test raised by student code"})
        finally:
            in_hook.discard(me)

    class SealedModule(types.SimpleNamespace):
        """A watched module as it was when sealed: attribute lookups never see later patches.

        Names the module did not have when sealed (lazily loaded submodules) come from the live module."""

        def __getattr__(self, name):
            return getattr(object.__getattribute__(self, "__sealed_module__"), name)

    def sealed_view(name, seen):
        if name in seen:
            return seen[name]
        mod, _, frozen = sealed[name]
        view = SealedModule()
        object.__setattr__(view, "__sealed_module__", mod)
        seen[name] = view
        for attr, value in frozen.items():
            sub = getattr(value, "__name__", None) if isinstance(value, ModuleType) else None
            setattr(view, attr, sealed_view(sub, seen) if sub in sealed else value)
        return view

    def __grader_test__(source, grade_id):
        """Run one graded test cell's source against the sealed modules; record whether it passed."""
        digest = source_digest(source)
        before = changed_classes()
        shell_ns = state["shell"].user_ns if state["shell"] is not None else {}
        scope = dict(shell_ns)
        views, views_by_alias = {}, {}
        for alias, mod_name in ALIASES.items():
            if alias in scope and mod_name in sealed:
                scope[alias] = views_by_alias[alias] = sealed_view(mod_name, views)
        scope["__builtins__"] = test_builtins = dict(sealed_builtins)
        real_import = sealed_builtins["__import__"]

        def sealed_import(name, globals=None, locals=None, fromlist=(), level=0):
            """``import math`` inside a test gives the sealed math, not a patched one."""
            module = real_import(name, globals, locals, fromlist, level)
            wanted = name if fromlist else name.partition(".")[0]
            return sealed_view(wanted, views) if level == 0 and wanted in sealed else module

        test_builtins["__import__"] = sealed_import
        passed, why = False, "did not finish"
        try:
            exec(compile(source, TEST_FILENAME, "exec"), scope)
            passed, why = True, ""
        except BaseException as err:  # noqa: BLE001  (re-raised below; KeyboardInterrupt included)
            why = f"{type(err).__name__}: {err}"[:300]
            raise
        finally:
            after = changed_classes()
            after += [f"{alias} rebound during the test" for alias in views_by_alias if scope.get(alias) is not views_by_alias[alias]]
            if scope.get("__builtins__") is not test_builtins or any(
                test_builtins.get(k, test_builtins) is not v for k, v in sealed_builtins.items() if k != "__import__"
            ):
                after.append("builtins changed during the test")
            if before or after:
                passed, why = False, "tampered: " + "; ".join((before or after)[:5])
            for name, value in scope.items():
                if name not in ALIASES and name != "__builtins__" and shell_ns.get(name, scope) is not value:
                    shell_ns[name] = value  # names the test defined stay defined, as in a plain run
            sys.audit("grader.test", grade_id, digest, passed, why[:300])

    runner_code = __grader_test__.__code__
    builtins_dict["__grader_test__"] = __grader_test__
    sys.addaudithook(hook)
    emit("start", {"pid": os.getpid(), "python": sys.version.split()[0], "seed": seed})


def main():
    """``python -m autograder.seal -f CONNECTION_FILE``: bootstrap, then hand over to ipykernel. Pre-started
    (``GRADER_GO_FD`` set), the connection file's path arrives on that pipe after the bootstrap."""
    key = _read_key(int(os.environ.pop("GRADER_KEY_FD")))
    record_fd = int(os.environ.pop("GRADER_RECORD_FD"))
    uid = os.environ.pop("GRADER_UID", None)
    if uid:  # graded as root: become a private user, which also clears every capability
        os.setgroups([])
        os.setresgid(int(uid), int(uid), int(uid))
        os.setresuid(int(uid), int(uid), int(uid))
    install(key, record_fd, seed=int(os.environ.get("GRADER_SEED", "0")))
    del key
    go_fd = os.environ.pop("GRADER_GO_FD", None)
    if go_fd is not None:  # pre-started (autograder.sandbox.start_warm): sealed, now wait for the connection file
        connection_file = _read_key(int(go_fd)).decode().strip()
        if not connection_file:
            sys.exit(0)  # the grader did not need this kernel
        sys.argv[1:] = ["-f", connection_file]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
