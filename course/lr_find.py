"""The learning-rate range test (Smith 2015; fastai's ``lr_find``), leaving the model as it found it.

Training runs for a few dozen steps while the learning rate grows exponentially from ``start`` to ``end``;
the loss is recorded at every step, smoothed, and the run stops once the smoothed loss exceeds
``diverge`` times its minimum. Where the loss keeps falling, the rate is large enough to learn and small
enough to be stable; the suggestion is half-way along the longest such stretch (fastai's ``valley``).
Then the model's parameters and buffers (BatchNorm running statistics included), its
``requires_grad`` flags and train/eval modes, the optimizer's state and the random number generators are
put back exactly: the sweep is a measurement, not training.

Notebook 05 runs it on the training photos before every strategy, with that strategy's own frozen
groups, and picks each strategy's peak rate from it.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer

from .fit import (
    BeforeEpoch,
    LayerLRs,
    Loader,
    LossFn,
    _channels_last_default,
    _to_device,
    grad_scaler,
    one_cycle_optimizer,
    train_step,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

SUGGESTION_RULE = ("valley: half-way along the longest stretch where the smoothed loss keeps falling "
                   "(fastai's default suggestion)")


@dataclass
class LRFind:
    """What a range test measured.

    Attributes:
        lrs: the learning rate of the reference group at each step (the others are scaled alike).
        losses: the smoothed training loss after each step (exponential moving average, bias-corrected).
        raw_losses: the loss of each step's batch.
        stopped: ``"diverged"`` (the smoothed loss passed ``diverge`` x its minimum) or ``"end"``.
        suggestion: the suggested peak rate for the reference group, by ``rule``.
        lr_min: a tenth of the rate at the smoothed loss's minimum (fastai's ``minimum``), for comparison.
        label: what was swept (for plots).
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    raw_losses: list[float] = field(default_factory=list)
    stopped: str = "end"
    suggestion: float = float("nan")
    lr_min: float = float("nan")
    rule: str = SUGGESTION_RULE
    label: str = ""

    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Axes:
        """Smoothed loss against the learning rate (log scale), the suggestion marked. Returns the axes."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        (line,) = ax.plot(self.lrs, self.losses, label=self.label or None, **kwargs)
        if math.isfinite(self.suggestion):
            at = min(range(len(self.lrs)), key=lambda i: abs(math.log(self.lrs[i] / self.suggestion)))
            ax.plot([self.suggestion], [self.losses[at]], "o", color=line.get_color())
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("smoothed training loss")
        return ax


def valley(losses: list[float]) -> int:
    """fastai's ``valley`` rule: the index half-way along the longest decreasing run of ``losses`` (the
    longest subsequence in which each loss is below the one before; O(n^2), n is a few hundred at most)."""
    n = len(losses)
    longest = [1] * n
    best_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[i] > longest[best_end]:
            best_end = i
    start = best_end - longest[best_end] + 1
    return start + (best_end - start) // 2


def _suggest(lrs: list[float], losses: list[float]) -> tuple[float, float]:
    """(valley, minimum / 10) over the recorded curve, leaving out what fastai leaves out: the first tenth of
    the steps (the average rests on a few batches) and the last five (the blow-up), fewer in a sweep of under
    50 steps; NaN when fewer than three steps are left."""
    finite = 0
    while finite < len(losses) and math.isfinite(losses[finite]):
        finite += 1
    skip, cut = finite // 10, min(5, finite // 10)   # fastai's 10 % and 5, shorter for short sweeps
    lrs, losses = lrs[skip:finite - cut], losses[skip:finite - cut]
    if len(losses) < 3:
        return float("nan"), float("nan")
    best = min(range(len(losses)), key=losses.__getitem__)
    return lrs[valley(losses)], lrs[best] / 10


def _snapshot(model: nn.Module, optimizer: Optimizer | None) -> dict[str, Any]:
    return {
        "state": copy.deepcopy(model.state_dict(keep_vars=False)),
        "flags": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "optimizer": copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None,
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
    }


def _restore(model: nn.Module, optimizer: Optimizer | None, saved: dict[str, Any]) -> None:
    with torch.no_grad():
        for key, value in model.state_dict(keep_vars=True).items():
            value.copy_(saved["state"][key])
    for p, flag, grad in zip(model.parameters(), saved["flags"], saved["grads"]):
        p.requires_grad_(flag)
        p.grad = grad
    for m, mode in zip(model.modules(), saved["modes"]):
        m.training = mode
    if optimizer is not None:
        optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["rng"])
    if saved["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all(saved["cuda_rng"])


def _batches(loader: Loader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches, starting over when it runs out."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the loader yields no batches")


def lr_find(
    model: nn.Module,
    loader: Loader,
    device: torch.device | str = "cpu",
    layer_lrs: LayerLRs | None = None,
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    smooth: float = 0.98,
    diverge: float = 4.0,
    before_epoch: BeforeEpoch | None = None,
    optimizer: Optimizer | None = None,
    loss_fn: LossFn = F.cross_entropy,
    label: str = "",
) -> LRFind:
    """Sweep the learning rate exponentially, record the loss, restore everything; returns an ``LRFind``.

    Args:
        model: on ``device``; only what is trainable (``requires_grad``) is swept, as training would.
        loader: yields (x, y) batches (it is restarted when it runs out); use the training data.
        layer_lrs: ``[(group, multiplier), ...]`` as ``course.fit.fit_one_cycle`` takes them, but with each
            group's rate as a multiple of the swept one (discriminative rates keep their ratios); None sweeps
            every parameter at the same rate. The reference rate is the one with multiplier 1.
        start, end, steps: the sweep: ``steps`` rates from ``start`` to ``end`` in geometric progression.
        smooth: the moving average's weight on the past (0.98 as fastai).
        diverge: stop when the smoothed loss exceeds ``diverge`` x its minimum so far (4 as fastai), or is
            not finite.
        before_epoch: called as ``before_epoch(model)`` after ``model.train()`` (e.g. ``bn_freeze``).
        optimizer: an optimizer over the model's parameters to sweep with, whose state is restored after;
            None builds AdamW as ``fit_one_cycle`` does (same betas and weight decay).
        loss_fn: ``loss_fn(model(x), y)``, a scalar.

    Returns:
        ``LRFind`` with the curve, why it stopped and the suggested rate (``SUGGESTION_RULE``).

    Raises:
        ValueError: nothing is trainable, or ``start``/``end``/``steps`` make no sweep.
    """
    if not (0 < start < end) or steps < 2:
        raise ValueError(f"need 0 < start < end and steps >= 2, got start={start}, end={end}, steps={steps}")
    device = torch.device(device)
    amp = device.type == "cuda"                       # as fit_one_cycle trains: mixed precision on a GPU,
    channels_last = _channels_last_default(device)    # channels-last images (and model) on a GPU or CPU
    saved = _snapshot(model, optimizer)
    try:
        if optimizer is None:
            pairs = layer_lrs if layer_lrs is not None else [(model, 1.0)]
            sweep_opt, groups = one_cycle_optimizer(model, pairs)
            multipliers = [g["max_lr"] for g in groups]
        else:
            sweep_opt, multipliers = optimizer, [1.0] * len(optimizer.param_groups)
        result = LRFind(label=label)
        if channels_last:
            model.to(memory_format=torch.channels_last)   # a layout, not a value: state_dict() is unchanged
        model.train()
        if before_epoch is not None:
            before_epoch(model)
        scaler = grad_scaler(device, amp)             # float16 on older GPUs needs its loss scaled
        ratio = (end / start) ** (1 / (steps - 1))
        average, best = 0.0, math.inf
        for step, (x, y) in zip(range(steps), _batches(loader)):
            lr = start * ratio**step
            for group, mult in zip(sweep_opt.param_groups, multipliers):
                group["lr"] = lr * mult
            x, y = _to_device(x, y, device, channels_last)
            loss, _ = train_step(model, sweep_opt, x, y, scaler=scaler, amp=amp, loss_fn=loss_fn)
            value = loss.item()
            average = smooth * average + (1 - smooth) * value
            smoothed = average / (1 - smooth ** (step + 1))
            result.lrs.append(lr)
            result.raw_losses.append(value)
            result.losses.append(smoothed)
            best = min(best, smoothed)
            if not math.isfinite(smoothed) or smoothed > diverge * best:
                result.stopped = "diverged"
                break
        result.suggestion, result.lr_min = _suggest(result.lrs, result.losses)
        return result
    finally:
        _restore(model, optimizer, saved)
