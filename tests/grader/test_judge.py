"""The judge (autograder.judge.process) and its boundary with the kernel (autograder.judge.wire,
autograder.judge.kernel_server).

The codec is tested on its own (what the judge refuses, what a lying object becomes); the rest against a real
Python process serving the judge (tests.support.judge_harness.PlainKernel): the student's code there, the
tests here. The class grader's whole path (sandbox, nbgrader, every fixture and attack) is
tests/grader/test_grader.py and tests/grader/test_autograde.py.
"""
import os
import re
import socket
import threading

import pytest
import torch
from torch import nn

from autograder.judge import wire
from autograder.judge.process import Judge, definitions
from tests.support.judge_harness import PlainKernel


def kernel_side(value):
    """``value`` encoded as the kernel's codec sends it: (message, blobs)."""
    codec = wire.Codec(wire.Registry("k"), judge=False)
    return codec.encode_message({"value": value})


def judge_decodes(message, blobs, limits=None):
    codec = wire.Codec(wire.Registry("j"), judge=True, limits=limits)
    return codec.decode_message(message, blobs)["value"]


# ---- the codec ---------------------------------------------------------------------------------------------

def test_lying_builtins_arrive_as_the_plain_types():
    """An int whose == is always true, a float and a str subclass arrive as their plain values."""

    class Liar(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    class LoudFloat(float):
        pass

    class Name(str):
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    got = judge_decodes(*kernel_side([Liar(3), LoudFloat(0.5), Name("a"), (Liar(1), True)]))
    assert got == [3, 0.5, "a", (1, True)]
    assert [type(v) for v in got[:3]] == [int, float, str] and type(got[3][0]) is int and got[3][1] is True
    assert got[0] != 26, "the judge's int compares as an int"


def test_objects_of_untrusted_classes_and_untrusted_names_stay_handles():
    """A dict subclass defined by the student, and functions from modules the judge does not trust, are
    handles: never rebuilt, never imported, equal only to themselves."""

    class AlwaysEqual(dict):
        def __eq__(self, other):
            return True

    import subprocess

    got = judge_decodes(*kernel_side([AlwaysEqual(a=1), subprocess.run, eval, len]))
    assert isinstance(got[0], wire.Handle) and got[0] != {} and got[0] != {"a": 1}
    assert isinstance(got[1], wire.Handle), ("subprocess is not trusted: "
                                             "its functions are not imported by name")
    assert isinstance(got[2], wire.Handle), "eval is not a builtin the judge lets a name stand for"
    assert got[3] is len


def test_modules_cross_by_value_and_tensors_keep_their_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model[0].requires_grad_(False)
    model.eval()
    model(torch.randn(5, 3)).sum()
    got = judge_decodes(*kernel_side(model))
    assert type(got) is nn.Sequential and type(got[1]) is nn.BatchNorm1d
    assert [n for n, _ in got.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), model.state_dict().values()))
    assert [p.requires_grad for p in got.parameters()] == [False, False, True, True]
    assert not got.training and not got[1].training


@pytest.mark.parametrize("value,why", [
    ("deep", "nested deeper"),
    ("many", "values in one message"),
    ("big", "over the limit"),
])
def test_the_judge_refuses_data_past_its_limits(value, why):
    """Deep nesting, too many values and too many bytes are refused before or while decoding, never obeyed."""
    limits = wire.Limits(bytes=1 << 20, depth=40, values=10_000)
    if value == "deep":
        text = "[" * 5000 + "]" * 5000
        with pytest.raises(wire.ProtocolError, match="nested deeper"):
            _through_socket(text.encode(), limits)
        return
    if value == "many":
        message, blobs = kernel_side(list(range(20_000)))
        with pytest.raises(wire.ProtocolError, match=why):
            judge_decodes(message, blobs, limits)
        return
    a, b = socket.socketpair()

    def send():
        try:
            wire.send_frame(a, {"value": None}, [bytes(2 << 20)])
        except wire.PeerGone:
            pass  # the judge stopped reading: what it must do

    threading.Thread(target=send, daemon=True).start()
    with pytest.raises(wire.ProtocolError, match="over"):
        wire.recv_frame(b, limits)


def _through_socket(head, limits):
    a, b = socket.socketpair()
    a.sendall(wire._HEAD.pack(len(head), 0) + head)
    return wire.recv_frame(b, limits)


@pytest.mark.parametrize("bad", [
    ["T", "k1", "t", "float32", [1000], 0, False, None],          # bytes that do not fit the shape
    ["T", "k1", "t", "float32", [4], -1, False, None],            # "unchanged" for a tensor never sent
    ["T", "k1", "t", "object", [1], 0, False, None],              # a dtype that is not a number
    ["m", "k77"],                                                 # a reference to nothing
    ["I", "k1", ["os", "system"], [], []],                        # not a class, not trusted: a handle at most
    ["nd", "object", [1], 0],                                     # an object array (pickle inside numpy)
    ["Q", 1],                                                     # an unknown kind
])
def test_malformed_values_are_refused_or_inert(bad):
    message = {"value": bad, "sync": []}
    try:
        got = judge_decodes(message, [bytearray(16)])
    except wire.ProtocolError:
        return
    assert isinstance(got, wire.Handle), f"{bad} decoded to {got!r}"


def test_definitions_keep_imports_from_trusted_packages_and_definitions_only():
    cells = ["%matplotlib inline\nimport torch\nimport subprocess\n"
             "from course.models import tiny_cnn\nx = train()",
             "def helper():\n    return 1\nclass Loader:\n    pass\nhelper()"]
    got = definitions(cells)
    assert got == ["import torch", "from course.models import tiny_cnn", "def helper():\n    return 1",
                   "class Loader:\n    pass"]


# ---- against a kernel ---------------------------------------------------------------------------------

@pytest.fixture
def kernel():
    k = PlainKernel()
    yield k
    k.close()


PREAMBLE = ["import torch", "from torch import nn", "from course.models import tiny_cnn"]


def run(kernel, source, seconds=30, preamble=PREAMBLE, judge=None):
    judge = judge or Judge(kernel.sock)
    return judge.run_test("t", source, seconds, preamble)


def test_student_code_patching_the_kernel_does_not_reach_the_test(kernel):
    """builtins, torch, AssertionError and the course's fixtures patched in the kernel: the judge's are its
    own."""
    assert kernel.run("import builtins, torch, course.models\n"
                      "builtins.sum = lambda *a: 0\nbuiltins.AssertionError = KeyError\n"
                      "torch.equal = lambda *a: True\ntorch.Tensor.__eq__ = lambda *a: True\n"
                      "course.models.tiny_cnn = lambda **k: None\ntiny_cnn = lambda **k: None\n"
                      "def answer(model):\n    return 0\n")["ok"]
    r = run(kernel, "m = tiny_cnn(num_classes=3)\nassert isinstance(m, nn.Module) and sum([1, 2]) == 3\n"
                    "assert not torch.equal(torch.zeros(2), torch.ones(2))\nassert answer(m) == 0\n"
                    "assert answer(m) == sum(p.numel() for p in m.parameters()), 'wrong'")
    assert not r["passed"] and r["ename"] == "AssertionError" and r["evalue"] == "wrong"


def test_mutations_come_back_and_identity_is_kept(kernel):
    """freeze(model) freezes the judge's own model; returned parameters are the judge's own objects."""
    kernel.run("def freeze(m):\n    for p in m.parameters():\n        p.requires_grad_(False)\n"
               "    m.eval()\n    return m\n"
               "def params(m):\n    return [p for p in m.parameters() if p.requires_grad]\n"
               "def step(m):\n    with torch.no_grad():\n        m[0].weight.add_(1)\n"
               "import torch")
    r = run(kernel, "m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))\nw = m[0].weight.clone()\n"
                    "assert params(m)[0] is m[0].weight and len(params(m)) == 4\n"
                    "step(m)\nassert torch.equal(m[0].weight, w + 1)\n"
                    "assert freeze(m) is m and not m.training\n"
                    "assert not any(p.requires_grad for p in m.parameters())\nassert params(m) == []")
    assert r["passed"], r


def test_what_the_test_let_go_of_is_no_longer_synced(kernel):
    """Models of earlier loop iterations, which the test can no longer reach, are forgotten on both sides (the
    kernel's registry is found as student code could find it): each call syncs the live model only, not every
    model made so far. A model the test still holds keeps its identity and its changes across calls."""
    from course.models import tiny_cnn

    m = tiny_cnn(num_classes=3)
    per_model = sum(1 for _ in m.modules()) + sum(1 for _ in m.parameters()) + sum(1 for _ in m.buffers())
    kernel.run("import gc\nfrom autograder.judge.wire import Registry\n"
               "def answer(model):\n    return sum(p.numel() for p in model.parameters())\n"
               "def mirrored():\n"
               "    return max(len(r.objects) for r in gc.get_objects() if isinstance(r, Registry))\n"
               "def bump(model):\n    model.extra = 7\n    return model\n")
    judge = Judge(kernel.sock)
    r = run(kernel, "kept = tiny_cnn(num_classes=3)\nassert bump(kept) is kept and kept.extra == 7\n"
                    "for i in range(6):\n    net_ = tiny_cnn(num_classes=3)\n    assert answer(net_) > 0\n"
                    f"n = mirrored()\nassert n < 3 * {per_model}, n\n"
                    "assert bump(kept) is kept", judge=judge)
    assert r["passed"], r
    assert len(judge.registry.objects) < 3 * per_model, (len(judge.registry.objects), per_model)


def test_a_loss_with_its_graph_crosses_with_the_same_leaves_and_gradients(kernel):
    kernel.run("import torch\ndef grads(loss, model):\n"
               "    return [None if g is None else g for g in torch.autograd.grad(loss, "
               "list(model.parameters()), allow_unused=True)]\n")
    r = run(kernel, "torch.manual_seed(0)\nm = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))\n"
                    "other = nn.Linear(3, 3)\n"
                    "x = torch.randn(4, 3)\nloss = m(other(x).detach()).pow(2).mean()\n"
                    "want = torch.autograd.grad(loss, list(m.parameters()), retain_graph=True)\n"
                    "got = grads(loss, m)\nassert all(torch.allclose(a, b) for a, b in zip(got, want))\n"
                    "loss.backward()\nassert m[0].weight.grad is not None, 'the judge keeps its own graph'")
    assert r["passed"], r


def test_a_callback_sees_the_state_of_the_moment(kernel):
    """A test's lambda called by the student's code runs in the judge, on the judge's model, as it is then."""
    kernel.run("def train(model, before_epoch):\n    for i in range(2):\n"
               "        model[i].requires_grad_(False)\n"
               "        before_epoch(model)\n    return model\n")
    r = run(kernel, "seen = []\nm = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 1))\n"
                    "train(m, lambda model: seen.append((model is m, "
                    "[p.requires_grad for p in model.parameters()])))\n"
                    "assert seen == [(True, [False, False, True, True]), "
                    "(True, [False, False, False, False])], seen")
    assert r["passed"], r


def test_handles_never_ask_the_kernel_about_equality(kernel):
    kernel.run("class Yes:\n    def __eq__(self, other):\n        return True\n"
               "    def __len__(self):\n        return 3\n"
               "def answer():\n    return Yes()\n")
    r = run(kernel, "a = answer()\nassert a != 26 and a != answer() and len(a) == 3\nassert a == 26")
    assert not r["passed"] and r["ename"] == "AssertionError"


def test_a_kernel_that_dies_mid_call_fails_that_test_and_every_later_one(kernel):
    kernel.run("import os\ndef answer():\n    os._exit(3)\n")
    judge = Judge(kernel.sock)
    first = run(kernel, "assert answer() == 1", judge=judge)
    assert not first["passed"] and "did not answer" in first["evalue"]
    later = run(kernel, "assert True", judge=judge)
    assert not later["passed"] and "lost the kernel" in later["evalue"]


def test_a_kernel_that_hangs_mid_call_fails_the_test_at_its_time_limit(kernel):
    kernel.run("import time\ndef answer():\n    time.sleep(600)\n")
    import time

    start = time.monotonic()
    r = run(kernel, "assert answer() == 1", seconds=3)
    assert not r["passed"] and "no answer in time" in r["evalue"] and time.monotonic() - start < 10


def test_the_kernel_is_refused_when_it_sends_too_much(kernel):
    """An answer over the judge's byte limit (here 1 MiB, 256 MiB when grading) is refused from its announced
    length, before the judge reads it: the test fails with the reason and the kernel is not asked again."""
    kernel.run("def answer():\n    return b'x' * (3 * 2**20)\n")
    judge = Judge(kernel.sock, limits=wire.Limits(bytes=1 << 20))
    r = run(kernel, "assert answer() == b''", judge=judge)
    assert not r["passed"] and r["ename"] == "ProtocolError" and "over" in r["evalue"], r
    assert "lost the kernel" in run(kernel, "assert True", judge=judge)["evalue"]


def test_no_byte_of_a_test_reaches_the_kernel(kernel):
    """After a test ran, its source (a hidden test's unique message included) is nowhere in the kernel's
    memory: read from /proc/<pid>/mem by this process, not asked of the kernel."""
    secret = "hidden-" + os.urandom(8).hex()
    kernel.run("def answer(m):\n    return 1\n")
    r = run(kernel, f"m = nn.Linear(2, 2)\nassert answer(m) == 1, {secret!r}\nprint('ran')")
    assert r["passed"] and r["stdout"] == "ran\n"
    assert _memory_contains(kernel.proc.pid, secret.encode()) is False
    assert _memory_contains(os.getpid(), secret.encode()) is True, "the search itself must be able to find it"


def _memory_contains(pid, needle):
    maps = open(f"/proc/{pid}/maps").read().splitlines()
    with open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
            start, end, perms = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
            if "r" not in perms or end - start > 1 << 30:
                continue
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except (OSError, ValueError, OverflowError):
                continue
    return False


def test_an_answer_the_kernel_cannot_encode_is_an_error_and_the_kernel_stays(kernel):
    """An answer nested too deep for the kernel's own encoder comes back as an error for that call; the
    kernel is still asked in the next test."""
    kernel.run("def answer():\n    out = []\n    for _ in range(10_000):\n        out = [out]\n"
               "    return out\n"
               "def fine():\n    return 7\n")
    judge = Judge(kernel.sock)
    first = run(kernel, "answer()", judge=judge)
    assert not first["passed"] and first["ename"] == "ProtocolError" and "nested deeper" in first["evalue"]
    assert run(kernel, "assert fine() == 7", judge=judge)["passed"]


def test_a_judge_that_never_says_ready_is_given_up_at_the_deadline():
    """A judge process that hangs before it listens (here a process that never writes) does not block its
    worker past the timeout."""
    import subprocess
    import time

    from autograder.judge.launch import Judge as JudgeProcess

    judge = JudgeProcess(unsafe=True)
    judge.process.kill()
    judge.process.wait()
    judge.process = subprocess.Popen(["sleep", "60"], stdout=subprocess.PIPE, start_new_session=True)
    try:
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="within 1 s"):
            judge.wait_ready(timeout=1)
        assert time.monotonic() - start < 3
    finally:
        judge.close()
