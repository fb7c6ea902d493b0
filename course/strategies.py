"""The fine-tuning strategies notebook 05 compares, written once: the notebook runs them and
``benchmarks.accuracy`` imports them; nothing else defines a strategy.

Nothing here solves an exercise: every tool a strategy needs that a notebook has the student write
(``freeze_to`` from 02, ``even_mults`` from 03, ``bn_freeze`` from 04, ``unfreeze_schedule`` and
``fine_tune`` from 05) arrives in a ``Tools`` bundle, which notebook 05 fills with its own functions.

The protocol (notebook 05, section 6): every strategy trains on the training part of the trainval photos
for the same number of epochs (the same number of optimizer steps), is evaluated on the validation part
after each epoch, and takes its learning rate from a range test (``course.lr_find``) run on the training
photos before the comparison. The test photos are scored once, when a run has finished, and nothing is
chosen on them.
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from .fit import History, evaluate, fit_one_cycle
from .lr_find import SUGGESTION_RULE, LRFind, lr_find

NewModel = Callable[..., tuple[nn.Module, list[nn.Module]]]
"""``new_model(seed, pretrained=True)`` -> ``(model on data.device, layer groups)``."""


@dataclass
class Tools:
    """The students' own functions a strategy uses (see each notebook for what they do)."""

    freeze_to: Callable           # 02: freeze_to(groups, n) freezes groups[:n], the rest trainable
    even_mults: Callable          # 03: even_mults(lo, hi, n), n rates in geometric progression
    bn_freeze: Callable           # 04: eval mode for BatchNorm layers whose parameters are all frozen
    fine_tune: Callable = None    # 05: fastai's recipe
    unfreeze_schedule: Callable = None  # 05: frozen groups at each epoch of gradual unfreezing


@dataclass
class Data:
    """Loaders every strategy shares: ``train`` (augmented, shuffled), ``valid`` (for every choice and every
    curve), ``device``, and ``sweep``: the steps of a learning-rate range test (``find_rates``, and LP-FT's
    own)."""

    train: object
    valid: object
    device: torch.device
    sweep: int = 60


def _fit(
    model: nn.Module,
    data: Data,
    layer_lrs: list[tuple[nn.Module, float]],
    epochs: int,
    history: History,
    before_epoch: Callable[[nn.Module], None] | None,
    progress: bool,
    **kw: Any,
) -> History:
    return fit_one_cycle(model, layer_lrs, data.train, epochs, data.valid, data.device,
                         before_epoch=before_epoch, history=history, progress=progress, **kw)


def head_only(model: nn.Module, groups: list[nn.Module], data: Data, tools: Tools, epochs: int, lr: float,
              progress: bool = False) -> History:
    """(a) The backbone frozen (its BatchNorm layers in eval mode), the new classifier trained at ``lr``."""
    tools.freeze_to(groups, len(groups) - 1)
    return _fit(model, data, [(groups[-1], lr)], epochs, History("(a) head only"), tools.bn_freeze,
                progress)


def full_fine_tuning(model: nn.Module, groups: list[nn.Module], data: Data, tools: Tools, epochs: int,
                     lr: float, progress: bool = False) -> History:
    """(b) Everything trainable from the first step, one rate ``lr`` for every group."""
    tools.freeze_to(groups, 0)
    return _fit(model, data, [(g, lr) for g in groups], epochs, History("(b) full fine-tuning"),
                tools.bn_freeze, progress)


def fastai_fine_tune(model: nn.Module, groups: list[nn.Module], data: Data, tools: Tools, epochs: int,
                     lr: float, progress: bool = False) -> History:
    """(c) fastai's ``fine_tune`` (the student's, notebook 05) with ``base_lr=lr``: one frozen epoch, then
    ``epochs - 1`` with discriminative rates; BatchNorm statistics update throughout, as in fastai."""
    history = tools.fine_tune(model, groups, data.train, epochs - 1, base_lr=lr, freeze_epochs=1,
                              valid_loader=data.valid, device=data.device, progress=progress)
    history.label = "(c) fine_tune"
    return history


def gradual_unfreezing(model: nn.Module, groups: list[nn.Module], data: Data, tools: Tools, epochs: int,
                       lr: float, factor: float = 2.6, progress: bool = False) -> History:
    """(d) ULMFiT: one more group each epoch (``unfreeze_schedule``), group i at
    ``lr / factor ** (top - i)``."""
    history = History("(d) gradual unfreezing")
    for n in tools.unfreeze_schedule(len(groups), epochs):
        tools.freeze_to(groups, n)
        layer_lrs = [(groups[i], lr / factor ** (len(groups) - 1 - i)) for i in range(n, len(groups))]
        _fit(model, data, layer_lrs, 1, history, tools.bn_freeze, progress)
    return history


def lp_ft(model: nn.Module, groups: list[nn.Module], data: Data, tools: Tools, epochs: int, lr: float,
          probe_epochs: int | None = None, progress: bool = False) -> History:
    """(e) LP-FT (Kumar et al., ICLR 2022): a linear probe (the head alone, ``lr``) for ``probe_epochs``
    (half the budget by default), then everything unfrozen at the rate a range test on the probed model
    suggests (the 'after unfreezing' curve), for the rest. Records that rate as ``history.ft_lr``."""
    probe_epochs = max(1, epochs // 2) if probe_epochs is None else probe_epochs
    if not 0 < probe_epochs < epochs:
        raise ValueError(f"LP-FT needs 0 < probe_epochs < epochs, got {probe_epochs} of {epochs}")
    tools.freeze_to(groups, len(groups) - 1)
    history = _fit(model, data, [(groups[-1], lr)], probe_epochs, History("(e) LP-FT"), tools.bn_freeze,
                   progress)
    tools.freeze_to(groups, 0)
    found = lr_find(model, data.train, data.device, steps=data.sweep, before_epoch=tools.bn_freeze)
    history.ft_lr = found.suggestion
    return _fit(model, data, [(g, found.suggestion) for g in groups], epochs - probe_epochs, history,
                tools.bn_freeze, progress)


def from_scratch(model: nn.Module, groups: list[nn.Module], data: Data, tools: Tools, epochs: int, lr: float,
                 progress: bool = False) -> History:
    """Baseline: the same network from a random initialisation, everything trained at ``lr``: what
    pretraining buys under the same budget. ``model`` must be the randomly initialised one."""
    tools.freeze_to(groups, 0)
    return _fit(model, data, [(g, lr) for g in groups], epochs, History("from scratch"), tools.bn_freeze,
                progress)


@dataclass
class Strategy:
    """A strategy, its label, which range test picks its rate, and whether it starts from pretrained
    weights."""

    key: str
    label: str
    train: Callable
    rate_from: str    # "frozen", "unfrozen" or "scratch": the curve of ``find_rates`` it takes its rate from
    pretrained: bool = True


STRATEGIES = {s.key: s for s in [
    Strategy("a", "(a) head only", head_only, "frozen"),
    Strategy("b", "(b) full fine-tuning", full_fine_tuning, "unfrozen"),
    Strategy("c", "(c) fine_tune", fastai_fine_tune, "frozen"),        # fastai: lr_find on the frozen model
    Strategy("d", "(d) gradual unfreezing", gradual_unfreezing, "frozen"),
    Strategy("e", "(e) LP-FT", lp_ft, "frozen"),                     # its second rate from its own range test
    Strategy("s", "from scratch", from_scratch, "scratch", pretrained=False),
]}


def find_rates(new_model: NewModel, data: Data, tools: Tools,
               progress: Callable[[str], object] | None = None) -> dict[str, LRFind]:
    """Range tests on the training photos before any comparison, with seed 0's models.

    Args:
        new_model: ``new_model(seed, pretrained=True)`` -> ``(model on data.device, layer groups)``.
        data: the loaders; each sweep runs ``data.sweep`` steps (fewer when the loss diverges).
        progress: called as ``progress(name)`` before each sweep (a print, say).

    Returns:
        ``{"frozen": LRFind, "unfrozen": LRFind, "scratch": LRFind}``: the pretrained model with only its
        new head trainable, with everything trainable, and the randomly initialised model.
    """
    curves = {}
    for name, pretrained, frozen in [("frozen", True, True), ("unfrozen", True, False),
                                     ("scratch", False, False)]:
        if progress:
            progress(name)
        model, groups = new_model(0, pretrained=pretrained)
        tools.freeze_to(groups, len(groups) - 1 if frozen else 0)
        curves[name] = lr_find(model, data.train, data.device, steps=data.sweep,
                               before_epoch=tools.bn_freeze,
                               label=f"{'pretrained' if pretrained else 'random'}, "
                                     f"{'head only' if frozen else 'all'} trainable")
    return curves


def relative_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> float:
    """||after - before|| / ||before|| over lists of tensors (a layer group's parameters): how far training
    moved a group from where it started, 0.0 for a group that did not move."""
    num = sum(float(((a.detach() - b).float() ** 2).sum()) for a, b in zip(after, before))
    den = sum(float((b.float() ** 2).sum()) for b in before)
    return (num / den) ** 0.5 if den > 0 else 0.0


def run(strategy: Strategy, new_model: NewModel, data: Data, tools: Tools, seed: int, epochs: int, lr: float,
        test_loader: DataLoader, progress: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Train one strategy from seed ``seed``; score the test photos once, at the end.

    ``new_model(seed, pretrained=...)`` makes the model (seeding torch, hence the augmentations); the
    training loader's shuffling is reseeded with ``seed`` too, so the strategies of one seed see the same
    batches.

    Returns:
        ``(model, record)``: the trained model, and a dict with ``key``, ``label``, ``seed``, ``lr`` (and
        ``ft_lr`` for LP-FT), ``epochs`` (validation accuracy, training accuracy and loss, and seconds after
        each epoch), ``steps``, ``valid_acc``, ``train_acc``, ``seconds`` (training wall time),
        ``weight_change`` (``relative_change`` of each layer group but the classifier, from where the run
        started) and ``test_acc`` (the one look at the test photos).
    """
    model, groups = new_model(seed, pretrained=strategy.pretrained)
    shuffle = getattr(data.train, "generator", None)
    if shuffle is not None:   # every strategy of one seed sees the same batches in the same order
        shuffle.manual_seed(seed)
    start = [[p.detach().clone() for p in g.parameters()] for g in groups[:-1]]
    history = strategy.train(model, groups, data, tools, epochs, lr, progress=progress)
    _, test_acc = evaluate(model, test_loader, data.device)
    moved = [relative_change(before, list(g.parameters())) for before, g in zip(start, groups[:-1])]
    last = history.epochs[-1]
    record = {
        "key": strategy.key, "label": strategy.label, "seed": seed, "lr": lr,
        "epochs": [{k: row[k] for k in ("epoch", "accuracy", "train_acc", "train_loss", "seconds")}
                   for row in history.epochs],
        "steps": sum(history.phase_steps), "valid_acc": last["accuracy"], "train_acc": last["train_acc"],
        "seconds": last["seconds"], "test_acc": test_acc, "weight_change": moved,
    }
    if hasattr(history, "ft_lr"):
        record["ft_lr"] = history.ft_lr
    return model, record


def spread(values: list[float], scale: float = 100.0) -> dict[str, float]:
    """``{"mean", "min", "max", "sd"}`` of ``values`` times ``scale`` (100: fractions as %), sd 0 for one
    value: a figure over seeds (notebooks 05 and 06)."""
    values = [scale * v for v in values]
    return {"mean": statistics.mean(values), "min": min(values), "max": max(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0}


def format_spread(s: dict[str, float], several: bool) -> str:
    """A ``spread`` as text: ``" 93.5 (93.0-94.3)"`` over several seeds, the mean alone for one."""
    return f"{s['mean']:5.1f} ({s['min']:.1f}-{s['max']:.1f})" if several else f"{s['mean']:5.1f}"


def summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per strategy over its seeds: ``{"key", "label", "seeds", "valid", "test", "train", "seconds",
    "steps"}``, where ``valid``, ``test`` and ``train`` are accuracies in % as ``{"mean", "min", "max",
    "sd"}`` (sd 0 for one seed) and ``seconds`` is the mean training time. In the order first seen."""
    rows = {}
    for r in records:
        rows.setdefault(r["key"], []).append(r)
    return [{"key": key, "label": rs[0]["label"], "seeds": [r["seed"] for r in rs],
             "valid": spread([r["valid_acc"] for r in rs]), "test": spread([r["test_acc"] for r in rs]),
             "train": spread([r["train_acc"] for r in rs]),
             "seconds": statistics.mean(r["seconds"] for r in rs),
             "steps": rs[0]["steps"]} for key, rs in rows.items()]


def format_table(rows: list[dict[str, Any]]) -> str:
    """The summary as text: validation and test accuracy (mean and min-max over seeds), training accuracy,
    seconds and optimizer steps, one line per strategy."""
    lines = [f"{'strategy':24s} {'validation %':>18s} {'test %':>18s} {'train %':>8s} {'seconds':>8s} "
             f"{'steps':>6s}"]
    for r in rows:
        def cell(s: dict[str, float]) -> str:
            return format_spread(s, len(r["seeds"]) > 1)
        lines.append(f"{r['label']:24s} {cell(r['valid']):>18s} {cell(r['test']):>18s} "
                     f"{r['train']['mean']:8.1f} {r['seconds']:8.1f} {r['steps']:6d}")
    return "\n".join(lines)


def machine() -> dict[str, str | int]:
    """Where a run happened, in words: the CPU or GPU, cores and torch version."""
    import os

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"device": gpu or f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def rates_record(curves: dict[str, LRFind]) -> dict[str, Any]:
    """The range tests for a results file: the rule, and each curve's suggestion, rates, losses, stop and
    label, by name."""
    return {"rule": SUGGESTION_RULE} | {name: {"suggestion": c.suggestion, "lrs": c.lrs, "losses": c.losses,
                                               "stopped": c.stopped, "label": c.label}
                                        for name, c in curves.items()}


def save_results(path: str | Path, records: list[dict[str, Any]], rates: dict[str, Any],
                 setting: dict[str, Any]) -> None:
    """Write a results file: ``{"setting": ..., "machine": machine(), "rates": {...}, "records": [...]}``.

    ``setting`` says what was run (data, image size, batch, epochs, seeds, commit); ``rates`` the chosen
    learning rate of each range test (and its rule)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"setting": setting, "machine": machine(), "rates": rates,
                                      "records": records}, indent=1) + "\n")


def load_results(path: str | Path) -> dict[str, Any]:
    """A results file as ``save_results`` wrote it (a dict)."""
    return json.loads(Path(path).read_text())
