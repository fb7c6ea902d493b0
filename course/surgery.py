"""Notebook 06's recipes for *which* layers to train, written once: the notebook runs them and
``benchmarks.which_layers`` imports them.

Nothing here solves an exercise: the tools a recipe needs that a notebook has the student write arrive in a
``Tools`` bundle (06's ``surgical``, ``lp_ft`` and ``relative_grad_norms``, 05's ``cache_features``, and
``bn_freeze``), which notebook 06 fills with its own functions and the benchmark with the reference answers.

The recipes (``RECIPES``), all with the same budget of ``probe_epochs + tune_epochs`` epochs:

- ``lp``, linear probe: the head alone (``surgical(groups, -1)``) for the whole budget;
- ``ft``, full fine-tuning: everything trainable from the first step, one rate;
- ``lpft``, LP-FT (Kumar et al., ICLR 2022): the student's ``lp_ft``, a probe then everything at one rate;
- ``g<k>``, surgical fine-tuning (Lee et al., ICLR 2023) of layer group k alone, after the same probe: the
  papers adapt a model whose head already fits the labels, so here the head is probed first and then frozen;
- ``rgn``, Auto-RGN after the same probe: everything trainable, group g at ``rate * s_g / max(s)``, with
  ``s`` the relative gradient norms measured once on the probed model (the paper rescales at every step);
- ``ft_bn``, ``lpft_bn``, ``rgn_bn``: controls, the same three with every BatchNorm layer's running statistics
  frozen (04's ``set_bn_eval`` at each epoch, at the same rates): what of a recipe's effect on shifted photos
  comes from the statistics a trainable BatchNorm layer re-estimates on augmented training batches, rather
  than from the weights.

The probe that ``g<k>`` and ``rgn`` start from is trained once per seed, and each of them starts from a copy,
so they differ only in what the second phase trains (a paired comparison). Every rate comes from a range
test (``course.lr_find``) on the training photos, of the model as that phase trains it, with seed 0's
model; the validation photos are where recipes are compared; the test photos, clean and shifted
(``course.shift``), are scored once a run has finished.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .fit import History, fit_one_cycle
from .lr_find import LRFind, lr_find
from .pretrained import lite0_body_head
from .probe import feature_distortion
from .strategies import NewModel, format_spread, spread

SURGICAL_GROUPS = {0: "stem", 4: "stage 4", 8: "head conv"}
"""Lite0's layer groups that surgical recipes tune alone (group 9, the head, is the linear probe)."""


@dataclass
class Tools:
    """The students' own functions the recipes use (see notebooks 05 and 06 for what they do)."""

    surgical: Callable             # 06: surgical(groups, k) leaves groups[k] alone trainable
    lp_ft: Callable                # 06: lp_ft(model, groups, loader, probe_epochs, ft_epochs, probe_lr,
    #                                   ft_lr, **fit_kwargs): the head alone, then everything; one History
    relative_grad_norms: Callable  # 06: relative_grad_norms(model, groups, images, labels) -> a float a group
    cache_features: Callable       # 05: cache_features(body, loader, device) -> (features, labels) on the CPU
    bn_freeze: Callable            # 05: eval mode for BatchNorm layers whose parameters are all frozen
    set_bn_eval: Callable          # 04: set_bn_eval(model): every BatchNorm layer in eval mode


@dataclass
class Data:
    """The loaders: ``train`` (augmented, shuffled), ``valid`` (every choice), ``tests`` (``{"clean": loader,
    corruption: loader, ...}``, scored once at the end of a run), ``device``, ``sweep`` (range-test steps),
    ``probe_epochs`` and ``tune_epochs`` (the budget of every recipe)."""

    train: object
    valid: object
    tests: dict[str, object]
    device: torch.device
    sweep: int = 40
    probe_epochs: int = 2
    tune_epochs: int = 3


@dataclass
class Recipe:
    key: str
    label: str
    rate: str      # the key of ``find_rates``'s curve it takes its rate from


def recipes(surgical_groups: dict[int, str] = SURGICAL_GROUPS) -> dict[str, Recipe]:
    """The recipes of a comparison, by key, in the order the notebook shows them."""
    out = [Recipe("lp", "linear probe", "head"), Recipe("ft", "full fine-tuning", "all"),
           Recipe("lpft", "LP-FT", "probed all")]
    out += [Recipe(f"g{k}", f"surgical: group {k}, {name}", f"probed g{k}")
            for k, name in surgical_groups.items()]
    out.append(Recipe("rgn", "Auto-RGN", "probed rgn"))
    out += [Recipe("ft_bn", "full fine-tuning, BN statistics frozen", "all"),
            Recipe("lpft_bn", "LP-FT, BN statistics frozen", "probed all"),
            Recipe("rgn_bn", "Auto-RGN, BN statistics frozen", "probed rgn")]
    return {r.key: r for r in out}


RECIPES = recipes()


def _fit(model: nn.Module, layer_lrs: list, data: Data, epochs: int, tools: Tools, history: History | None,
         label: str, progress: bool, before_epoch: Callable | None = None) -> History:
    return fit_one_cycle(model, layer_lrs, data.train, epochs, data.valid, data.device,
                         before_epoch=before_epoch or tools.bn_freeze, history=history or History(label),
                         progress=progress)


def unfreeze_all(groups: list[nn.Module]) -> None:
    """Every parameter of every group trainable."""
    for g in groups:
        g.requires_grad_(True)


def probe(model: nn.Module, groups: list[nn.Module], data: Data, tools: Tools, lr: float,
          progress: bool = False) -> History:
    """The linear probe the two-phase recipes start from: the head alone for ``data.probe_epochs``."""
    tools.surgical(groups, -1)
    return _fit(model, [(groups[-1], lr)], data, data.probe_epochs, tools, None, "linear probe", progress)


def rgn_scores(model: nn.Module, groups: list[nn.Module], data: Data, tools: Tools, batches: int = 4
               ) -> list[float]:
    """The student's ``relative_grad_norms`` averaged over the first ``batches`` training batches, with the
    model in training mode and frozen BatchNorm layers in eval mode, as training would run it."""
    model.train()
    tools.bn_freeze(model)
    scores = []
    for i, (x, y) in enumerate(data.train):
        if i == batches:
            break
        scores.append(tools.relative_grad_norms(model, groups, x.to(data.device), y.to(data.device)))
    return [statistics.mean(column) for column in zip(*scores)]


def rgn_multipliers(scores: list[float]) -> list[float]:
    """Auto-RGN's rate multipliers: each group's score over the largest."""
    top = max(scores)
    return [s / top for s in scores]


def second_phase(key: str, groups: list[nn.Module], tools: Tools, lr: float, scores: list[float] | None
                 ) -> list[tuple[nn.Module, float]]:
    """Freeze for recipe ``key``'s second phase (``"g<k>"`` or ``"rgn"``) and return its ``layer_lrs``."""
    if key == "rgn":
        unfreeze_all(groups)
        return [(g, lr * m) for g, m in zip(groups, rgn_multipliers(scores))]
    k = int(key[1:])
    tools.surgical(groups, k)
    return [(groups[k], lr)]


def find_rates(new_model: NewModel, data: Data, tools: Tools, keys: list[str],
               progress: Callable[[str], object] | None = None) -> tuple[dict[str, LRFind], list[float]]:
    """Range tests on the training photos with seed 0's models, before any comparison.

    Returns ``(curves, scores)``: ``curves["head"]`` (the pretrained model, head alone), ``curves["all"]``
    (everything trainable, new head), and, on seed 0's probe (``probe`` at the head's rate),
    ``"probed all"`` (LP-FT's second phase), ``"probed g<k>"`` for each surgical recipe in ``keys`` and
    ``"probed rgn"`` (Auto-RGN's rates swept together, their ratios kept); ``scores``: the relative
    gradient norms Auto-RGN's ratios came from.
    """
    say = progress or (lambda name: None)
    curves = {}
    for name in ("head", "all"):
        say(name)
        model, groups = new_model(0)
        (tools.surgical(groups, -1) if name == "head" else unfreeze_all(groups))
        curves[name] = lr_find(model, data.train, data.device, steps=data.sweep, before_epoch=tools.bn_freeze,
                               label=f"pretrained, {'head alone' if name == 'head' else 'all'} trainable")
    say("the probe")
    model, groups = new_model(0)
    probe(model, groups, data, tools, curves["head"].suggestion)
    scores = rgn_scores(model, groups, data, tools)
    for key in ["all"] + [k for k in keys if k.startswith("g")] + ["rgn"]:
        name = f"probed {key}"
        say(name)
        if key == "all":
            unfreeze_all(groups)
            layer_lrs = None
        else:
            layer_lrs = second_phase(key, groups, tools, 1.0, scores)
        curves[name] = lr_find(model, data.train, data.device, layer_lrs, steps=data.sweep,
                               before_epoch=tools.bn_freeze, label=f"probed, {key} trainable")
    return curves, scores


@torch.no_grad()
def _accuracy(head: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> float:
    head = head.cpu().eval()
    return (head(features.float()).argmax(1) == labels).float().mean().item()


def features(model: nn.Module, data: Data, tools: Tools) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The body's features of every test set (``data.tests``), with the student's ``cache_features``.

    The model is put back in the default memory layout first: ``fit_one_cycle`` leaves it channels-last, whose
    convolutions round differently (a relative difference of about 4e-6 in Lite0's features), and features
    compared before and after training must come from the same computation."""
    model.to(memory_format=torch.contiguous_format)
    body, _ = lite0_body_head(model)
    return {name: tools.cache_features(body, loader, data.device) for name, loader in data.tests.items()}


def score(model: nn.Module, data: Data, tools: Tools, before: dict[str, tuple] | None = None
          ) -> dict[str, Any]:
    """Test accuracy on every test set (clean and shifted) and, given the pretrained features ``before``,
    the feature distortion of each:
    ``{"test": {name: acc}, "shifted_mean": acc, "distortion": {name: d}}``."""
    after = features(model, data, tools)
    _, head = lite0_body_head(model)
    head = copy.deepcopy(head)
    test = {name: _accuracy(head, f, y) for name, (f, y) in after.items()}
    shifted = [acc for name, acc in test.items() if name != "clean"]
    out = {"test": test, "shifted_mean": statistics.mean(shifted) if shifted else None}
    if before is not None:
        out["distortion"] = {name: feature_distortion(before[name][0], after[name][0]) for name in after}
    return out


@dataclass
class Run:
    """One recipe's finished run: its record (for the results file) and the trained model."""

    record: dict[str, Any]
    model: nn.Module = field(repr=False)


def run_seed(new_model: NewModel, data: Data, tools: Tools, seed: int, keys: list[str],
             rates: dict[str, float], scores: list[float], progress: bool = False,
             on_run: Callable[[Run], object] | None = None) -> list[Run]:
    """Every recipe in ``keys`` from seed ``seed``; the two-phase ones from one shared probe.

    ``rates``: ``{curve name: rate}`` from ``find_rates``. Each run is scored once, at its end, on every test
    set; ``on_run(run)`` is called after each (a print, say). Returns the runs in ``keys``' order.
    """
    def fresh() -> tuple[nn.Module, list[nn.Module]]:
        model, groups = new_model(seed)
        shuffle = getattr(data.train, "generator", None)
        if shuffle is not None:   # every recipe of one seed sees the same batches in the same order
            shuffle.manual_seed(seed)
        return model, groups

    pretrained, _ = fresh()
    before = features(pretrained, data, tools)
    probed = None
    runs = []
    for key in keys:
        recipe = RECIPES[key]
        lr = rates[recipe.rate]
        base, bn_frozen = key.removesuffix("_bn"), key.endswith("_bn")
        before_epoch = tools.set_bn_eval if bn_frozen else tools.bn_freeze
        start = time.perf_counter()
        if base in ("lp", "ft", "lpft"):
            model, groups = fresh()
            if base == "lp":
                tools.surgical(groups, -1)
                history = _fit(model, [(groups[-1], lr)], data, data.probe_epochs + data.tune_epochs, tools,
                               None, recipe.label, progress)
            elif base == "ft":
                unfreeze_all(groups)
                history = _fit(model, [(g, lr) for g in groups], data, data.probe_epochs + data.tune_epochs,
                               tools, None, recipe.label, progress, before_epoch)
            else:
                history = tools.lp_ft(model, groups, data.train, data.probe_epochs, data.tune_epochs,
                                      rates["head"], lr, valid_loader=data.valid, device=data.device,
                                      before_epoch=before_epoch, progress=progress)
        else:
            if probed is None:
                model, groups = fresh()
                probe_history = probe(model, groups, data, tools, rates["head"], progress)
                probed = (copy.deepcopy(model.state_dict()), probe_history)
            model, groups = fresh()
            model.load_state_dict(probed[0])
            history = copy.deepcopy(probed[1])
            layer_lrs = second_phase(base, groups, tools, lr, scores)
            history = _fit(model, layer_lrs, data, data.tune_epochs, tools, history, recipe.label, progress,
                           before_epoch)
        seconds = time.perf_counter() - start
        last = history.epochs[-1]
        record = {"key": key, "label": recipe.label, "seed": seed, "lr": lr, "valid_acc": last["accuracy"],
                  "train_acc": last["train_acc"], "seconds": seconds,
                  "epochs": [{k: row[k] for k in ("epoch", "accuracy", "train_acc", "train_loss")}
                             for row in history.epochs]}
        record |= score(model, data, tools, before)
        run = Run(record, model)
        runs.append(run)
        if on_run:
            on_run(run)
    return runs


def summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per recipe over its seeds, in the order first seen: ``{"key", "label", "seeds", "valid",
    "clean", "shifted", "per_shift": {name: ...}, "distortion_clean", "distortion_shifted"}``; accuracies in %
    and each as ``{"mean", "min", "max", "sd"}`` (sd 0 for one seed)."""
    rows: dict[str, list] = {}
    for r in records:
        rows.setdefault(r["key"], []).append(r)
    out = []
    for key, rs in rows.items():
        shifts = [n for n in rs[0]["test"] if n != "clean"]
        row = {"key": key, "label": rs[0]["label"], "seeds": [r["seed"] for r in rs],
               "valid": spread([r["valid_acc"] for r in rs]),
               "clean": spread([r["test"]["clean"] for r in rs]),
               "shifted": spread([r["shifted_mean"] for r in rs]),
               "per_shift": {n: spread([r["test"][n] for r in rs]) for n in shifts}}
        if "distortion" in rs[0]:
            row["distortion_clean"] = spread([r["distortion"]["clean"] for r in rs], 1.0)
            row["distortion_shifted"] = spread([statistics.mean(r["distortion"][n] for n in shifts)
                                                for r in rs], 1.0)
        out.append(row)
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    """The summary as text: validation, clean test and mean shifted test accuracy (mean and min-max over
    seeds), and the feature distortion of clean and shifted test photos."""
    lines = [f"{'recipe':42s} {'validation %':>18s} {'test, clean %':>18s} {'test, shifted %':>18s} "
             f"{'distortion clean / shifted':>27s}"]
    for r in rows:
        def cell(s: dict[str, float]) -> str:
            return format_spread(s, len(r["seeds"]) > 1)
        dist = (f"{r['distortion_clean']['mean']:.3f} / {r['distortion_shifted']['mean']:.3f}"
                if "distortion_clean" in r else "")
        lines.append(f"{r['label']:42s} {cell(r['valid']):>18s} {cell(r['clean']):>18s} "
                     f"{cell(r['shifted']):>18s} {dist:>27s}")
    return "\n".join(lines)
