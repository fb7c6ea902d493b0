"""Unit tests for the course package."""
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import course
from autograder.publish.layout import ROOT
from course.config import grading_mode, show_warnings_on_stdout
from course.device import default_device
from course.models import TiedLM, tiny_cnn
from course.plots import plot_grad_norms


@pytest.mark.parametrize(
    "env,expected",
    [
        ({}, False),
        ({"NBGRADER_EXECUTION": "autograde"}, True),
        ({"NBGRADER_EXECUTION": "validate"}, True),
        ({"NBGRADER_EXECUTION": "something-else"}, False),
        ({"COURSE_FAST": "1"}, True),
        ({"COURSE_FAST": "Yes "}, True),
        ({"COURSE_FAST": "0"}, False),
        ({"COURSE_FAST": ""}, False),
        ({"COURSE_FAST": "0", "NBGRADER_EXECUTION": "autograde"}, True),
    ],
)
def test_grading_mode_reads_nbgrader_and_the_explicit_switch(env, expected):
    assert grading_mode(env) is expected


def test_grading_mode_refuses_a_typo():
    with pytest.raises(ValueError, match="COURSE_FAST"):
        grading_mode({"COURSE_FAST": "fast"})


def test_default_device():
    assert default_device({"COURSE_DEVICE": "cpu"}) == torch.device("cpu")
    assert default_device({"NBGRADER_EXECUTION": "autograde"}) == torch.device("cpu"), "grading is on the CPU"
    with pytest.raises(ValueError, match="not a device"):
        default_device({"COURSE_DEVICE": "gpu0"})
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            default_device({"COURSE_DEVICE": "cuda"})
        assert default_device({}).type in {"cpu", "mps"}
    else:
        assert default_device({}) == torch.device("cuda")


def test_seed_everything_repeats_every_generator():
    def draw():
        return random.random(), np.random.rand(), torch.randn(3)

    assert course.seed_everything(7) == 7
    a = draw()
    course.seed_everything(7)
    b = draw()
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    course.seed_everything(8)
    assert not torch.equal(draw()[2], a[2])
    for bad in (-1, 1.5, "0", True):
        with pytest.raises(ValueError):
            course.seed_everything(bad)


def test_tiny_cnn_shapes_and_parts():
    net = tiny_cnn(num_classes=5, width=4)
    assert net(torch.randn(2, 3, 9, 7)).shape == (2, 5)
    assert set(dict(net.named_children())) == {"body", "head"}
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.body.modules())


def test_tied_lm_shares_one_parameter():
    lm = TiedLM(vocab_size=7, dim=3)
    assert lm.head.weight is lm.embed.weight
    assert [n for n, _ in lm.named_parameters()] == ["embed.weight", "mix.weight", "mix.bias"]
    assert len(lm.state_dict()) == 4
    logits = lm(torch.randint(0, 7, (2, 5)))
    assert logits.shape == (2, 7)
    logits.sum().backward()
    assert lm.embed.weight.grad is not None


def test_plot_grad_norms_draws_bars_and_marks_missing_gradients():
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_grad_norms({"full": {"a": 1.0, "b": 0.5}, "frozen": {"b": 0.25}})
    assert len(ax.patches) == 3, "one bar per (case, parameter) that has a gradient"
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["no grad"], texts
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    ax = plot_grad_norms({"zeros": {"a": 0.0}})
    assert [t.get_text() for t in ax.texts] == ["0.0"]
    with pytest.raises(ValueError):
        plot_grad_norms({})


def test_show_warnings_on_stdout(capsys, monkeypatch):
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    show_warnings_on_stdout()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning(UserWarning("careful"), UserWarning, "x.py", 3)
    out, err = capsys.readouterr()
    assert "x.py:3: UserWarning: careful" in out and err == ""


def test_import_course_is_cheap():
    """`import course` pulls in neither matplotlib nor torchvision nor timm (nor torch, until used)."""
    code = ("import sys, course; "
            "print(sorted(m for m in ('matplotlib', 'torchvision', 'timm', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out.strip() == "[]"


def test_plot_freeze_cost_has_time_and_memory_panels():
    import matplotlib

    matplotlib.use("Agg")
    from course.plots import plot_freeze_cost

    rows = [{"frozen": k, "forward_s": 0.01, "backward_s": 0.02 / (k + 1), "saved_bytes": 2**20 * (3 - k)}
            for k in range(3)]
    fig = plot_freeze_cost(rows)
    time_ax, mem_ax = fig.axes
    assert len(time_ax.lines) == 2 and len(mem_ax.lines) == 1
    assert list(mem_ax.lines[0].get_ydata()) == [3.0, 2.0, 1.0], "memory is drawn in MiB"
    with pytest.raises(ValueError):
        plot_freeze_cost([])
