"""The adversarial corpus: submissions of 01_layers that attack the grader, each with an honest grader's score.

Every case starts from the reference solution (10 points: count_params 3, grad_norms 3, params_reached 4)
and changes it. A cheat that tries to win points always comes with a wrong answer, so that earning nothing
is visible: the score must be what the wrong answer alone deserves. ``{course}``, ``{home_canary}`` and
``{port}`` in a case's code are filled in by the test (the scratch course, a file in the real home folder,
a TCP server on the host's loopback).
"""
import json
from dataclasses import dataclass, field

from tests.grading import Case, build_submission

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


@dataclass
class Attack:
    """One adversarial submission.

    name: the student id. why: what it attacks. earns: {exercise: points} an honest grader gives.
    status: the Result status expected (or a tuple of those accepted). cells: {solution cell grade_id: code} replacing the solution.
    after: [(grade_id or None for the end, code)] cells the student added after a cell. edit / delete: as
    in tests.grading.Case. raw: bytes written instead of a notebook (None: build one). notebook: False
    means the folder holds no notebook at all. kernelspec / minor / duplicate / split: see build().
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


ATTACKS = [
    Attack("honest_solution", "control: the reference solution", full()),
    Attack("honest_wrong", "control: one wrong exercise", full(count_params=0), cells={"count_params_solution": WRONG_COUNT}),
    Attack("infinite_loop", "a loop that never ends in a solution cell (cell time limit)", full(count_params=0),
           cells={"count_params_solution": "while True:\n    pass\n" + SOLUTION_COUNT}),
    Attack("sleep_forever", "time.sleep forever", full(count_params=0),
           cells={"count_params_solution": "import time\ntime.sleep(10**9)\n" + SOLUTION_COUNT}),
    Attack("os_exit", "the kernel exits (os._exit) in the second exercise: the first keeps its points",
           full(grad_norms=0, params_reached=0), status="crashed",
           cells={"grad_norms_solution": "import os\nos._exit(3)\n"}),
    Attack("segfault", "a segfault through ctypes in the second exercise", full(grad_norms=0, params_reached=0),
           status="crashed", cells={"grad_norms_solution": "import ctypes\nctypes.string_at(0)\n"}),
    Attack("memory_bomb", "allocates until memory runs out", full(count_params=0),
           cells={"count_params_solution": "hog = []\nwhile True:\n    hog.append(bytearray(2**28))\n" + SOLUTION_COUNT}),
    # Under load the forking cell can outlast its time limit and leave the kernel unable to answer, so the
    # bomb sits in the last exercise: it loses that one (graded or crashed), the earlier ones keep theirs.
    Attack("fork_bomb", "forks until no more processes may be made", full(params_reached=0), status=("graded", "crashed"),
           cells={"params_reached_solution": "import os\nwhile True:\n    os.fork()\n"}),
    Attack("output_flood", "prints 20 MB (not a cheat: full marks, but the output is cut)", full(),
           after=[("count_params_solution", "for i in range(200_000):\n    print('spam ' * 20)\n")]),
    Attack("write_gradebook", "gives itself extra credit in the gradebook", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT}, after=[(None, CHEAT_GRADEBOOK)]),
    Attack("write_source", "overwrites the instructor's source notebook", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT},
           after=[(None, _write('"{course}/source/01_layers/01_layers.ipynb"', "source"))]),
    Attack("write_release", "overwrites release/", full(count_params=0), cells={"count_params_solution": WRONG_COUNT},
           after=[(None, _write('"{course}/release/01_layers/01_layers.ipynb"', "release"))]),
    Attack("write_other_student", "overwrites another student's submission", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT},
           after=[(None, _write('"{course}/submitted/honest_solution/01_layers/01_layers.ipynb"', "other student"))]),
    Attack("write_home", "writes into the instructor's home folder", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT}, after=[(None, _write('"{home_canary}"', "home"))]),
    Attack("read_hidden_tests", "reads the hidden tests from source/ and prints them", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT},
           after=[(None, 'try:\n    print(open("{course}/source/01_layers/01_layers.ipynb").read())\nexcept Exception as err:\n    print("source:", type(err).__name__)\n')]),
    Attack("network", "opens a TCP connection to a server on the host", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT},
           after=[(None, 'import socket\ntry:\n    socket.create_connection(("127.0.0.1", {port}), timeout=5).sendall(b"leak")\n    print("connected")\nexcept Exception as err:\n    print("network:", type(err).__name__, err)\n')]),
    Attack("patch_math_isclose", "math.isclose always True, with a wrong grad_norms (L1 instead of L2)",
           full(grad_norms=0), cells={"grad_norms_solution": "import math\nmath.isclose = lambda *a, **k: True\n" + WRONG_NORMS}),
    Attack("patch_builtins_abs", "builtins.abs returns 0 so the visible test's tolerance check passes",
           full(grad_norms=0), cells={"grad_norms_solution": "import builtins\nbuiltins.abs = lambda x: 0\n" + WRONG_NORMS}),
    Attack("patch_tensor_eq", "patches torch.Tensor.__eq__ (a sealed class): what follows earns nothing",
           full(grad_norms=0, params_reached=0),
           cells={"grad_norms_solution": "import torch\ntorch.Tensor.__eq__ = lambda self, other: True\n" + WRONG_NORMS}),
    Attack("patch_torch_restoring", "a torch.equal that restores itself after answering True once",
           full(grad_norms=0), cells={"grad_norms_solution": "import torch\n_real = torch.equal\ndef _fake(*a, **k):\n    torch.equal = _real\n    return True\ntorch.equal = _fake\nimport math\n_iscl = math.isclose\nmath.isclose = lambda *a, **k: True\n" + WRONG_NORMS}),
    Attack("patch_course", "replaces the course package's tiny_cnn used by the hidden tests", full(count_params=0),
           cells={"count_params_solution": "import course.models, torch.nn as nn\ncourse.models.tiny_cnn = lambda num_classes=2: nn.Linear(1, 1)\n" + WRONG_COUNT}),
    Attack("hide_tracebacks", "silences IPython's traceback display so failed tests show no error",
           full(grad_norms=0), cells={"grad_norms_solution": "get_ipython().showtraceback = lambda *a, **k: None\n" + WRONG_NORMS}),
    Attack("strip_asserts", "an input transformer that deletes assert lines from every later cell",
           full(grad_norms=0), cells={"grad_norms_solution": "def _no_asserts(lines):\n    return [l for l in lines if not l.lstrip().startswith('assert')]\nget_ipython().input_transformers_post.append(_no_asserts)\n" + WRONG_NORMS}),
    Attack("shadow_runner", "defines its own __grader_test__ that does nothing", full(grad_norms=0),
           cells={"grad_norms_solution": "def __grader_test__(*args):\n    pass\n" + WRONG_NORMS}),
    Attack("forge_records", "writes a fake 'test passed' record into every pipe it holds", full(grad_norms=0),
           cells={"grad_norms_solution": "import os, stat\nfor fd in range(3, 256):\n    try:\n        if stat.S_ISFIFO(os.fstat(fd).st_mode):\n            os.write(fd, b'\\n5 test {\"grade_id\":\"grad_norms_hidden\",\"passed\":true} 00\\n')\n    except OSError:\n        pass\n" + WRONG_NORMS}),
    Attack("forge_via_json", "patches json so that a failed test's record says passed, then kills the kernel so"
           " that only the records decide", full(grad_norms=0, params_reached=0), status="crashed",
           cells={"grad_norms_solution": "import json\n_encode = json.JSONEncoder.encode\ndef _lie(self, o):\n"
                  "    if isinstance(o, dict) and 'passed' in o:\n        o = dict(o, passed=True, why='')\n"
                  "    return _encode(self, o)\njson.JSONEncoder.encode = _lie\n" + WRONG_NORMS,
                  "params_reached_solution": "import os\nos._exit(3)\n"}),
    Attack("gc_reach", "walks the garbage collector to reach the grader's internals", full(grad_norms=0, params_reached=0),
           cells={"grad_norms_solution": "import gc\n_all = gc.get_objects()\n" + SOLUTION_NORMS}),
    Attack("redefine_after_tests", "wrong answer, then a correct one defined after the tests ran", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT}, after=[(None, SOLUTION_COUNT)]),
    Attack("edit_locked_test", "replaces a test cell with `pass`", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT}, edit={"count_params_visible": "pass", "count_params_hidden": "pass"}),
    Attack("delete_test_cells", "deletes the test cells of a wrong exercise", full(count_params=0),
           cells={"count_params_solution": WRONG_COUNT}, delete=("count_params_visible", "count_params_hidden")),
    Attack("changed_kernelspec", "metadata asks for a bash kernel", full(),
           kernelspec={"name": "bash", "display_name": "Bash", "language": "bash"}),
    Attack("nbformat_44", "nbformat 4.4 without cell ids (full marks)", full(), minor=4),
    Attack("duplicated_cell", "a solution cell copied, grading metadata and all (full marks)", full(),
           duplicate="count_params_solution"),
    Attack("split_cell", "a solution cell split in two, both halves with its metadata (full marks)", full(),
           split="grad_norms_solution"),
    Attack("invalid_json", "a truncated notebook", ZERO, status="rejected", raw=b'{"cells": [{"cell_type": "code", '),
    Attack("binary_junk", "random bytes", ZERO, status="rejected", raw=bytes(range(256)) * 64),
    Attack("empty_file", "an empty file", ZERO, status="rejected", raw=b""),
    Attack("missing_notebook", "a folder without the notebook", ZERO, status="rejected", notebook=False),
    Attack("other_assignment", "the notebook of 02_freezing handed in as 01_layers", ZERO, status="rejected",
           other_assignment="02_freezing"),
]


def build(attack, fill):
    """The bytes of the attack's notebook (or None: no file). fill: {name: value} for the code's {placeholders}."""
    if attack.raw is not None:
        return attack.raw
    if not attack.notebook:
        return None
    if attack.other_assignment:
        nb = build_submission(Case("x", "x"), attack.other_assignment)
        return json.dumps(nb).encode()
    code = {gid: src.replace("{course}", fill["course"]).replace("{home_canary}", fill["home_canary"]).replace("{port}", str(fill["port"]))
            for gid, src in attack.cells.items()}
    nb = build_submission(Case(attack.name, attack.why, replace=code, edit=attack.edit, delete=attack.delete), ASSIGNMENT)
    import nbformat

    for anchor, src in attack.after:
        src = src.replace("{course}", fill["course"]).replace("{home_canary}", fill["home_canary"]).replace("{port}", str(fill["port"]))
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
