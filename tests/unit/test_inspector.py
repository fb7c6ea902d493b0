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


# -- scores per layer group (notebook 06: the student's relative gradient norms) ---------------------------
# The course computes no relative gradient norm (notebook 06's exercise); the tests compute their own.


def _score_setup():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    groups = [net[:2], net[2:4], net[4:]]
    images, labels = torch.randn(8, 3), torch.randint(0, 2, (8,))
    return net, groups, images, labels


def _relative_grad_norms(net, groups, images, labels):
    """||grad|| / ||weights|| per group, after one backward pass (0 for a group without gradients)."""
    net.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(net(images), labels).backward()
    out = []
    for g in groups:
        params = list(g.parameters())
        weights = torch.sqrt(sum(p.detach().pow(2).sum() for p in params))
        grads = [p.grad for p in params if p.grad is not None]
        out.append((torch.sqrt(sum(q.pow(2).sum() for q in grads)) / weights).item() if grads else 0.0)
    return out


def test_group_scores_column_in_order():
    net, groups, images, labels = _score_setup()
    scores = _relative_grad_norms(net, groups, images, labels)
    rows = layer_table(net, groups=groups, by="group", scores=scores)
    assert [r.score for r in rows] == pytest.approx(scores)
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].rstrip().endswith("relative grad norm")
    assert [line.split()[-1] for line in lines[2:]] == [f"{s:.3g}" for s in scores]
    assert "my score" in format_table(rows, score_label="my score").splitlines()[0]
    assert all(r.score is None for r in layer_table(net)), "module rows carry no score"


def test_without_scores_the_table_is_unchanged():
    net, groups, images, labels = _score_setup()
    _relative_grad_norms(net, groups, images, labels)
    plain = layer_table(net, groups=groups, by="group")
    assert all(r.score is None for r in plain)
    text = format_table(plain)
    assert "relative grad norm" not in text and text.splitlines()[0].rstrip().endswith("|grad|")
    scored = format_table(layer_table(net, groups=groups, by="group", scores=[1.0, 2.0, 3.0]))
    assert [line[: len(text.splitlines()[2])] for line in scored.splitlines()[2:]] == text.splitlines()[2:], \
        "the score column only adds to the right"
    assert format_table(layer_table(net)) == format_table(layer_table(net), score_label="other")


def test_wrong_scores_raise_value_error_with_the_count_expected():
    net, groups, _, _ = _score_setup()
    for bad in ([1.0, 2.0], [1.0, 2.0, 3.0, 4.0], [1.0, float("nan"), 3.0], [1.0, "2", 3.0],
                [1.0, None, 3.0], 3.0, "abc"):
        with pytest.raises(ValueError, match="expected 3 finite numbers"):
            layer_table(net, groups=groups, by="group", scores=bad)
    rows = layer_table(net, groups=groups, by="group", scores=torch.tensor([1.0, 2.0, 3.0]))
    assert [r.score for r in rows] == [1.0, 2.0, 3.0], "a tensor of scores is fine"
    with pytest.raises(ValueError, match="by=\"group\""):
        layer_table(net, scores=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="expected 3"):
        inspect(net, groups=groups, group_scores=lambda: [1.0, 2.0])


def test_group_scores_needs_groups():
    net, _, _, _ = _score_setup()
    with pytest.raises(ValueError, match="needs groups"):
        inspect(net, group_scores=lambda: [1.0])


def test_widget_calls_group_scores_again_on_refresh():
    net, groups, images, labels = _score_setup()
    calls = []

    def scores():
        calls.append(1)
        return _relative_grad_norms(net, groups, images, labels)

    widget = inspect(net, groups=groups, group_scores=scores)
    assert len(calls) == 1
    first = widget.scores
    assert first == pytest.approx(_relative_grad_norms(net, groups, images, labels))
    assert f"{first[0]:.3g}" in widget.group_labels[0].value
    top = max(range(3), key=first.__getitem__)
    assert f"group {top} the largest" in widget.score_summary.value
    assert widget.score_bars[top].value == 1.0 and all(b.value <= 1.0 for b in widget.score_bars)
    with torch.no_grad():  # shrink the last group's weights: its relative gradient norm changes
        net[4].weight.mul_(0.01)
    widget.refresh_button.click()
    assert len(calls) == 2
    assert widget.scores[2] != pytest.approx(first[2])
    assert f"{widget.scores[2]:.3g}" in widget.group_labels[2].value
    assert f"{widget.scores[2]:.3g}" in widget.table(), "the text table shows the scores too"
    widget.group_checks[0].value = True  # freezing refreshes, so the scores are read again
    assert len(calls) == 3 and widget.scores[0] == 0.0


def test_widget_shows_the_error_when_group_scores_raises():
    net, groups, images, labels = _score_setup()
    fail = [True]

    def scores():
        if fail[0]:
            raise ZeroDivisionError("my bug")
        return _relative_grad_norms(net, groups, images, labels)

    widget = inspect(net, groups=groups, group_scores=scores)
    assert widget.scores is None and "ZeroDivisionError: my bug" in widget.score_summary.value
    assert "my bug" in widget.table()
    assert all(b.value == 0.0 for b in widget.score_bars)
    fail[0] = False
    widget.refresh()
    assert widget.score_error is None and "largest" in widget.score_summary.value
    fail[0] = None  # now it returns the wrong count: shown on a refresh, not raised from a button
    widget.group_scores = lambda: [1.0]
    widget.refresh()
    assert widget.scores is None and "expected 3" in widget.score_summary.value
