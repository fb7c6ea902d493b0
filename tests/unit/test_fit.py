"""course.fit: what fit_one_cycle trains, at which rates, what it records, and the errors it gives."""
import pytest
import torch
from torch import nn

from course.fit import History, evaluate, fit_one_cycle, one_cycle_optimizer
from course.models import tiny_cnn


def data(n=32, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def test_frozen_parameters_do_not_move_at_all():
    """A frozen body stays bit for bit (no weight decay, no momentum on it); the head moves; BN eval kept."""
    torch.manual_seed(0)
    model = tiny_cnn(3)
    model.body.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def bn_eval(m):
        m.body[1].eval()

    history = fit_one_cycle(model, [(model.body, 1e-2), (model.head, 1e-2)], data(), 2, before_epoch=bn_eval,
                            progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("body")), \
        "frozen body changed"
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert history.max_lr_of("body.0.weight") is None and history.max_lr_of("head.weight") == 1e-2


def test_without_bn_eval_the_running_statistics_move():
    """The control for the test above: train-mode BatchNorm in a frozen body still updates its statistics."""
    torch.manual_seed(0)
    model = tiny_cnn(3)
    model.body.requires_grad_(False)
    mean = model.body[1].running_mean.clone()
    fit_one_cycle(model, [(model.head, 1e-2)], data(), 1, progress=False)
    assert not torch.equal(mean, model.body[1].running_mean)


def test_history_records_epochs_steps_phases_and_rates():
    """Two phases in one History: epochs numbered on, seconds cumulative, lrs per step, one-cycle shape."""
    torch.manual_seed(0)
    model = tiny_cnn(3)
    loader = data()
    h = fit_one_cycle(model, [(model.body, 1e-3), (model.head, 1e-2)], loader, 2, loader, progress=False)
    h = fit_one_cycle(model, [(model.head, 5e-3)], loader, 1, loader, history=h, progress=False)
    assert [r["epoch"] for r in h.epochs] == [1, 2, 3] and [r["phase"] for r in h.epochs] == [0, 0, 1]
    assert h.phase_steps == [8, 4] and len(h.lrs) == 12
    assert all(a["seconds"] < b["seconds"] for a, b in zip(h.epochs, h.epochs[1:]))
    assert all(0 <= r["accuracy"] <= 1 and r["valid_loss"] > 0 for r in h.epochs)
    # decayed and no-decay groups per layer group: body conv (no bias) + conv2 weight | BN, conv2 bias; head
    assert [g["layer"] for g in h.groups[0]] == [0, 0, 1, 1]
    assert [g["weight_decay"] for g in h.groups[0]] == [0.01, 0.0, 0.01, 0.0]
    head_lrs = [row[2] for row in h.lrs[:8]]
    assert max(head_lrs) == pytest.approx(1e-2) and head_lrs[0] == pytest.approx(1e-2 / 25)
    assert head_lrs[-1] < 1e-2 / 1000, "anneals almost to zero"
    assert h.max_lr_of("body.0.weight", phase=0) == 1e-3 and h.max_lr_of("body.0.weight", phase=1) is None


def test_degenerate_one_cycle_warm_up_trains():
    """4 steps at pct_start=0.25 make torch's OneCycleLR divide by zero; fit_one_cycle still trains."""
    model = tiny_cnn(3)
    h = fit_one_cycle(model, [(model, 1e-3)], data(32), 1, progress=False)
    assert len(h.lrs) == 4 and all(v > 0 for row in h.lrs for v in row)


@pytest.mark.parametrize(
    "layer_lrs, message",
    [
        (lambda m: [(m.body, 1e-3), (m.body, 1e-3)], "in two layer groups"),
        (lambda m: [(nn.Linear(2, 2), 1e-3)], "not the model's"),
        (lambda m: [(m.head, 0.0)], "positive"),
        (lambda m: [(m.head, "1e-3")], "positive"),
        (lambda m: [(m.head.requires_grad_(False), 1e-3)], "nothing to train"),
    ],
)
def test_bad_layer_groups_are_refused_clearly(layer_lrs, message):
    model = tiny_cnn(3)
    with pytest.raises(ValueError, match=message):
        one_cycle_optimizer(model, layer_lrs(model))


def test_bad_arguments_are_refused_clearly():
    model = tiny_cnn(3)
    with pytest.raises(ValueError, match="epochs"):
        fit_one_cycle(model, [(model, 1e-3)], data(), 0, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        fit_one_cycle(model, [(model, 1e-3)], [], 1, progress=False)
    with pytest.raises(ValueError, match="CUDA"):
        fit_one_cycle(model, [(model, 1e-3)], data(), 1, amp=True, progress=False)


def test_channels_last_gives_the_same_training():
    """channels_last changes memory layout only: the same losses on the CPU."""
    runs = []
    for cl in (False, True):
        torch.manual_seed(0)
        model = tiny_cnn(3)
        runs.append(fit_one_cycle(model, [(model, 1e-2)], data(), 2, channels_last=cl, progress=False))
    a, b = ([r["train_loss"] for r in h.epochs] for h in runs)
    assert a == pytest.approx(b, rel=1e-4)


def test_channels_last_is_the_default_on_the_cpu():
    """On the CPU too the convolutions' weights end up channels-last (oneDNN's faster layout)."""
    torch.manual_seed(0)
    model = tiny_cnn(3)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last)
    fit_one_cycle(model, [(model, 1e-2)], data(), 1, progress=False)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_evaluate_restores_the_mode_and_counts_right():
    model = tiny_cnn(3).train()
    loss, acc = evaluate(model, data(20), "cpu")
    assert model.training and loss > 0 and acc in {k / 20 for k in range(21)}


def test_history_serialises():
    h = History("x", epochs=[{"epoch": 1, "seconds": 2.0}])
    assert h.seconds == 2.0 and h.as_dict()["label"] == "x" and History().seconds == 0.0


@pytest.mark.parametrize("capability, dtype, scaled", [
    ((7, 5), torch.float16, True), ((8, 0), torch.bfloat16, False), ((9, 0), torch.bfloat16, False),
    ((6, 1), torch.float16, True)])
def test_mixed_precision_uses_bfloat16_only_where_the_gpu_computes_it(monkeypatch, capability, dtype, scaled):
    """A T4 (7.5) emulates bfloat16, and torch.cuda.is_bf16_supported() says True there: float16 and a
    loss scaler instead. Checked on the CPU with the capability faked."""
    from course.fit import amp_dtype, grad_scaler

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    made = []
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: made.append((device, enabled)))
    assert amp_dtype(torch.device("cuda")) == dtype
    grad_scaler(torch.device("cuda"), True)
    grad_scaler(torch.device("cuda"), False)
    assert made == [("cuda", scaled), ("cuda", False)]
