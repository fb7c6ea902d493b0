"""The layer inspector without a browser: layer_table's rows, the text table, and the widget's state."""
import time

import pytest
import torch
import torchvision
from torch import nn

from course.inspector import format_table, inspect, layer_table
from course.models import TiedLM, tiny_cnn


def rows_by_path(rows):
    return {r.path: r for r in rows}


def test_counts_frozen_state_and_shared_parameters():
    lm = TiedLM(vocab_size=10, dim=4)
    lm.mix.requires_grad_(False)
    rows = rows_by_path(layer_table(lm))
    assert list(rows) == ["embed", "mix", "head"]
    assert (rows["embed"].params, rows["head"].params) == (40, 40), "the tied weight shows under both owners"
    assert rows["mix"].frozen == "all" and rows["embed"].frozen == "none"
    net = tiny_cnn(num_classes=3)
    net.body[0].requires_grad_(False)
    rows = rows_by_path(layer_table(net))
    body = rows["body"]
    assert body.frozen == "some" and body.params == sum(p.numel() for p in net.body.parameters())
    assert body.trainable == body.params - net.body[0].weight.numel()
    assert rows["body.2"].frozen == "" and rows["body.2"].params == 0, "ReLU has no parameters"
    assert rows["body.1"].depth == 1 and rows["body"].has_children and not rows["head"].has_children


def test_batchnorm_modes_and_the_frozen_bn_warning():
    net = tiny_cnn(num_classes=3)
    net.body.requires_grad_(False)
    rows = rows_by_path(layer_table(net))
    assert rows["body.1"].bn_mode == "train"
    assert any("running statistics still update" in w for w in rows["body.1"].warnings)
    assert rows["body"].child_warnings >= 1, "a collapsed parent shows that something below needs a look"
    net.body[1].eval()
    rows = rows_by_path(layer_table(net))
    assert rows["body.1"].bn_mode == "eval" and rows["body.1"].warnings == []
    assert rows["head"].bn_mode is None


def test_optimizer_groups_learning_rates_and_mistakes():
    net = tiny_cnn(num_classes=3)
    opt = torch.optim.SGD(
        [{"params": net.body.parameters(), "lr": 1e-4, "weight_decay": 0.01},
         {"params": [net.head.weight], "lr": 1e-2}],
        lr=0.1, momentum=0.9,
    )
    net.body[3].requires_grad_(False)
    rows = rows_by_path(layer_table(net, opt))
    assert rows["body.0"].in_optimizer == "all" and rows["body.0"].lr == (1e-4,)
    assert rows["body.0"].weight_decay == (0.01,)
    assert rows["head"].in_optimizer == "some" and rows["head"].lr == (1e-2,)
    assert rows["body"].lr == (1e-4,)
    assert any("weight decay" in w for w in rows["body.3"].warnings), "frozen but decayed"
    assert any("not in the optimizer" in w for w in rows["head"].warnings), "head.bias is missing"
    assert layer_table(net)[0].in_optimizer == "", "no optimizer, no column"


def test_momentum_state_and_gradient_norms():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    rows = rows_by_path(layer_table(net, opt))
    want = torch.sqrt(net[1].weight.grad.pow(2).sum() + net[1].bias.grad.pow(2).sum()).item()
    assert rows["1"].grad_norm == pytest.approx(want, rel=1e-6)
    net.zero_grad(set_to_none=True)
    net[0].requires_grad_(False)
    rows = rows_by_path(layer_table(net, opt))
    assert rows["1"].grad_norm is None
    assert any("momentum state" in w for w in rows["0"].warnings)


def test_module_attribute_mistake_is_flagged():
    net = tiny_cnn()
    net.body.requires_grad = False
    rows = rows_by_path(layer_table(net))
    assert any("plain attribute" in w for w in rows["body"].warnings)
    assert rows["body"].frozen == "none", "and indeed nothing is frozen"


def test_group_rows():
    net = tiny_cnn()
    groups = [net.body[:2], net.body[2:], net.head]
    net.body.requires_grad_(False)
    rows = layer_table(net, groups=groups, by="group")
    assert [r.path for r in rows] == ["group 0", "group 1", "group 2"]
    assert [r.frozen for r in rows] == ["all", "all", "none"]
    assert rows[0].bn_mode == "train" and rows[2].bn_mode is None
    with pytest.raises(ValueError):
        layer_table(net, by="group")
    with pytest.raises(ValueError):
        layer_table(net, by="layer")


def test_text_table_is_readable():
    net = tiny_cnn()
    net.body.requires_grad_(False)
    text = format_table(layer_table(net))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["module", "type", "params", "trainable"]
    assert any(line.startswith("body ") and "Sequential" in line for line in lines)
    assert any("! frozen BatchNorm in train mode" in line for line in lines)


def test_widget_checkbox_freezes_exactly_that_module():
    net = tiny_cnn()
    widget = inspect(net)
    body = widget._views["body"]
    body.check.value = True
    assert not any(p.requires_grad for p in net.body.parameters())
    assert all(p.requires_grad for p in net.head.parameters())
    body.toggle.value = True
    conv = widget._views["body.0"]
    assert conv.check.value is True, "expanded children show the new state"
    conv.check.value = False
    assert net.body[0].weight.requires_grad and not net.body[3].weight.requires_grad
    assert body.check.value is False, "the parent is no longer entirely frozen"


def test_widget_slider_calls_freeze_to_and_group_boxes():
    net = tiny_cnn()
    groups = [net.body[:2], net.body[2:], net.head]
    calls = []

    def spy(gs, n):
        calls.append(n)
        for i, g in enumerate(gs):
            g.requires_grad_(i >= n)

    widget = inspect(net, groups=groups, freeze_to=spy)
    widget.slider.value = 2
    assert calls == [2]
    assert [all(p.requires_grad for p in g.parameters()) for g in groups] == [False, False, True]
    assert [c.value for c in widget.group_checks] == [True, True, False]
    widget.group_checks[2].value = True
    assert not any(p.requires_grad for p in net.parameters())
    assert widget.slider.value == 3 and calls == [2], "refreshing the slider must not call freeze_to again"


def test_widget_groups_without_freeze_to_have_boxes_and_no_slider():
    """The course ships no freeze_to (it is notebook 02's exercise): without the student's, no slider; the
    group boxes still freeze exactly their group."""
    net = tiny_cnn()
    groups = [net.body[:2], net.body[2:], net.head]
    widget = inspect(net, groups=groups)
    assert widget.slider is None
    widget.group_checks[1].value = True
    assert [all(p.requires_grad for p in g.parameters()) for g in groups] == [True, False, True]


def test_widget_refresh_shows_changes_made_by_code():
    net = tiny_cnn()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    widget = inspect(net, opt)
    net.head.requires_grad_(False)
    assert widget._views["head"].check.value is False, "not refreshed yet"
    widget.refresh()
    assert widget._views["head"].check.value is True
    assert "frozen but in the optimizer" not in widget._views["head"].label.value, \
        "no grad, no decay, no state"
    net.head.requires_grad_(True)
    torch.nn.functional.cross_entropy(net(torch.randn(2, 3, 8, 8)), torch.tensor([0, 1])).backward()
    widget.refresh()
    assert "|grad|" in widget._views["head"].label.value
    widget.freeze_all.click()
    assert not any(p.requires_grad for p in net.parameters())
    assert "0</b> of" in widget.totals.value
    widget.unfreeze_all.click()
    assert all(p.requires_grad for p in net.parameters())


def test_without_a_widget_front_end_it_is_a_table():
    widget = inspect(tiny_cnn())
    bundle = widget._repr_mimebundle_()
    assert bundle["text/plain"].startswith("module") and "head" in bundle["text/plain"]
    assert repr(widget) == bundle["text/plain"]


def test_resnet50_opens_and_refreshes_quickly(record_timing):
    """Not a timed test: records how long opening and refreshing take, for the summary."""
    net = torchvision.models.resnet50(weights=None)
    opt = torch.optim.AdamW(net.parameters())
    start = time.perf_counter()
    widget = inspect(net, opt)
    opened = time.perf_counter() - start
    start = time.perf_counter()
    widget.refresh()
    refreshed = time.perf_counter() - start
    record_timing("inspector on ResNet-50: open", opened)
    record_timing("inspector on ResNet-50: refresh", refreshed)
    assert len(widget._views) == len(list(net.children()))
