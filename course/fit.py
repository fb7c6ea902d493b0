"""Training loops: one optimizer step, one epoch, and a one-cycle schedule with a rate per layer group.

Everything that trains in the course goes through ``train_step``: zero the gradients, forward (under mixed
precision on a GPU), loss, backward, optimizer step. ``train_epoch`` runs it over a loader (notebook 04);
``fit_one_cycle`` (notebook 05) runs epochs of it with a schedule and records a ``History``;
``course.lr_find`` sweeps the learning rate with it.

``fit_one_cycle`` trains whatever is trainable: freezing is the caller's decision, made before the call with
``requires_grad``, as notebook 02 taught. It builds AdamW over the trainable parameters only (frozen ones
would otherwise still be decayed or moved by momentum, notebook 03), with no weight decay on 1-D parameters
(biases, BatchNorm), and ``torch.optim.lr_scheduler.OneCycleLR`` with one peak learning rate per group.
On a GPU it uses mixed precision and channels-last memory; a ``tqdm`` bar shows each epoch. Given the
optimizer and scheduler that ``course.checkpoint.load_checkpoint`` rebuilt, it continues an interrupted run
exactly where the checkpoint was saved.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR
from torch.utils.data import DataLoader

Loader = DataLoader | Sequence[tuple[torch.Tensor, torch.Tensor]]
"""A ``DataLoader`` or a list of ``(x, y)`` batches: x (N, ...) float32 inputs, y (N,) int64 class indices."""
LayerLRs = Sequence[tuple[nn.Module | Iterable[nn.Parameter], float]]
"""``[(module or parameters, peak learning rate), ...]``, input to output."""
BeforeEpoch = Callable[[nn.Module], None]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class History:
    """What training did, epoch by epoch and step by step.

    Attributes:
        epochs: one dict per epoch: ``epoch`` (1-based, counted across phases), ``phase``, ``train_loss``,
            ``train_acc`` (on the augmented batches, in train mode), ``valid_loss`` and ``accuracy`` (None
            without a validation loader), ``seconds`` (training wall time so far, evaluation excluded),
            ``trainable`` (trainable parameter count).
        lrs: one list per optimizer step: the learning rate of each optimizer group at that step.
        groups: one list per phase: for each optimizer group, ``{"names": [...], "max_lr": float,
            "weight_decay": float, "layer": int}``, names as in ``model.named_parameters()``, ``layer`` the
            index of the layer group it came from (each layer group gives a decayed and a no-decay group).
        phase_steps: optimizer steps in each phase.
    """

    label: str = ""
    epochs: list[dict[str, Any]] = field(default_factory=list)
    lrs: list[list[float]] = field(default_factory=list)
    groups: list[list[dict[str, Any]]] = field(default_factory=list)
    phase_steps: list[int] = field(default_factory=list)

    def max_lr_of(self, name: str, phase: int = -1) -> float | None:
        """Peak learning rate parameter ``name`` had in ``phase`` (None: frozen, not in the optimizer)."""
        for group in self.groups[phase]:
            if name in group["names"]:
                return group["max_lr"]
        return None

    @property
    def seconds(self) -> float:
        """Training wall time in seconds (0.0 before the first epoch)."""
        return self.epochs[-1]["seconds"] if self.epochs else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "epochs": self.epochs, "lrs": self.lrs, "groups": self.groups,
                "phase_steps": self.phase_steps}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> History:
        """The ``History`` that ``as_dict`` wrote (``load_checkpoint`` returns it so), lists copied."""
        return cls(record["label"], list(record["epochs"]), list(record["lrs"]), list(record["groups"]),
                   list(record["phase_steps"]))


# -- the optimizer and its schedule ---------------------------------------------------------------------


def _split_decay(
    named: list[tuple[str, nn.Parameter]], lr: float, weight_decay: float, layer: int
) -> list[dict[str, Any]]:
    """Two optimizer groups for one layer group: decayed (>= 2-D weights) and not decayed (biases, norms)."""
    decay = [(n, p) for n, p in named if p.ndim >= 2]
    plain = [(n, p) for n, p in named if p.ndim < 2]
    return [
        {"params": [p for _, p in part], "names": [n for n, _ in part], "lr": lr, "weight_decay": wd,
         "layer": layer}
        for part, wd in ((decay, weight_decay), (plain, 0.0))
        if part
    ]


def one_cycle_optimizer(
    model: nn.Module,
    layer_lrs: LayerLRs,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.99),
) -> tuple[torch.optim.AdamW, list[dict[str, Any]]]:
    """AdamW (fused, on CPU or CUDA) over the trainable parameters of ``model``, one rate per layer group.

    Args:
        layer_lrs: list of ``(module or iterable of parameters, peak lr)`` pairs, input to output. Frozen
            parameters are left out; a pair whose parameters are all frozen adds no group.

    Returns:
        ``(optimizer, groups)``: ``groups`` describes each optimizer group as ``History.groups`` does.

    Raises:
        ValueError: nothing is trainable, a parameter appears in two pairs, or a parameter is not the model's.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    seen, param_groups = set(), []
    for layer, (part, lr) in enumerate(layer_lrs):
        params = list(part.parameters()) if isinstance(part, nn.Module) else list(part)
        for p in params:
            if id(p) not in names:
                raise ValueError("a layer group holds a parameter that is not the model's (a copy?)")
            if id(p) in seen:
                raise ValueError(f"parameter {names[id(p)]} is in two layer groups")
            seen.add(id(p))
        if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"learning rates must be positive numbers, got {lr!r}")
        trainable = [(names[id(p)], p) for p in params if p.requires_grad]
        param_groups += _split_decay(trainable, float(lr), weight_decay, layer)
    if not param_groups:
        raise ValueError("nothing to train: every parameter in layer_lrs is frozen")
    # PyTorch's fused AdamW updates every tensor in one kernel, where its default loops over them in Python:
    # the same update (to float rounding); for a linear head on cached features on the CPU, 53 us a step
    # instead of 127, and 8 % off an epoch
    fused = all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in param_groups for p in g["params"]
    )
    optimizer = torch.optim.AdamW(
        [{k: v for k, v in g.items() if k not in ("names", "layer")} for g in param_groups], betas=betas,
        fused=fused,
    )
    groups = [
        {k: g[k] for k in ("names", "weight_decay", "layer")} | {"max_lr": g["lr"]} for g in param_groups
    ]
    return optimizer, groups


def one_cycle_scheduler(
    optimizer: Optimizer, total_steps: int, pct_start: float = 0.25, div: float = 25.0, final_div: float = 1e4
) -> OneCycleLR:
    """``OneCycleLR`` over ``total_steps`` optimizer steps, each group peaking at its own rate.

    The peak of a group is its ``max_lr`` if a one-cycle schedule already set one (an optimizer that
    ``load_checkpoint`` rebuilt), else its ``lr`` (as ``one_cycle_optimizer`` sets it). Pass it to
    ``load_checkpoint`` as ``make_scheduler=lambda opt: one_cycle_scheduler(opt, total_steps)``: the saved
    state then replaces the schedule's shape (warm-up, divisors) and the step reached.
    """
    if pct_start * total_steps == 1.0:
        # OneCycleLR divides by zero when its warm-up ends at step 0 exactly (4 steps at pct_start=0.25);
        # a warm-up a hair longer gives the same schedule to within a millionth.
        pct_start *= 1 + 1e-6
    return OneCycleLR(
        optimizer,
        max_lr=[g.get("max_lr", g["lr"]) for g in optimizer.param_groups],
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div,
        final_div_factor=final_div,
    )


# -- devices, memory layout and mixed precision ---------------------------------------------------------


def _to_device(
    x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on the device (asynchronously from pinned memory), images channels-last if asked."""
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _channels_last_default(device: torch.device) -> bool:
    """Channels-last (NHWC) images by default on CUDA and on the CPU, where oneDNN's convolutions prefer it.

    Measured on a 2-core CPU, EfficientNet-Lite0, batch 32 at 224 px: a full fine-tuning step 3.3 s in NCHW,
    2.1 s channels-last (``python -m benchmarks.freeze_cost``). Other devices keep PyTorch's default.
    """
    return device.type in ("cuda", "cpu")


def amp_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision type for a CUDA ``device``: bfloat16 where the GPU computes it natively (compute
    capability 8.0 or newer: A100, L4, H100, RTX 30xx and later), float16 with loss scaling elsewhere.

    Not ``torch.cuda.is_bf16_supported()``: by default it also answers True where bfloat16 is only emulated,
    as on Colab's T4 (capability 7.5), where it is slow and would leave the loss scaler off.
    """
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def grad_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    """A ``torch.amp.GradScaler`` that scales the loss only under float16 autocast (bfloat16 has float32's
    range and needs none; without mixed precision it does nothing)."""
    return torch.amp.GradScaler("cuda", enabled=bool(amp) and amp_dtype(device) == torch.float16)


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """CUDA autocast to ``amp_dtype(device)`` when ``amp``; otherwise a context that changes nothing."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=amp_dtype(device))


def _sync(device: torch.device) -> None:
    """Wait for the GPU to finish its queued work, so that wall-clock times measure it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- one step, one epoch, evaluation ---------------------------------------------------------------------


def train_step(
    model: nn.Module,
    optimizer: Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
    loss_fn: LossFn = F.cross_entropy,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on one batch: zero the gradients, forward, loss, backward, step.

    Args:
        x, y: the batch, already on the model's device: inputs (N, ...), targets (N,) class indices.
        scaler: a ``torch.amp.GradScaler`` (see ``grad_scaler``) for float16 mixed precision; None (or a
            disabled scaler) steps plainly.
        amp: run the forward pass under CUDA autocast (``amp_dtype``); the loss is computed in float32.
        loss_fn: ``loss_fn(logits, y)`` -> the batch's mean loss, a scalar tensor.

    Returns:
        ``(loss, logits)``, both detached: the loss a 0-d tensor, the logits (N, classes) as the model
        gave them.
    """
    optimizer.zero_grad(set_to_none=True)
    with _autocast(x.device, amp):
        logits = model(x)
    loss = loss_fn(logits.float(), y)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()  # float16: scaled up so small gradients do not round to zero
        scaler.step(optimizer)  # unscales the gradients; skips the step if any is inf or NaN
        scaler.update()
    return loss.detach(), logits.detach()


def _train_epoch(
    model: nn.Module,
    loader: Loader,
    optimizer: Optimizer,
    device: torch.device,
    before_epoch: BeforeEpoch | None = None,
    *,
    scheduler: LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
    channels_last: bool = False,
    lrs: list[list[float]] | None = None,
    progress: bool = False,
    desc: str = "epoch",
) -> tuple[float, float]:
    """The training loop: ``train_step`` on every batch of ``loader``, once.

    ``scheduler`` is stepped after every optimizer step; ``lrs`` (a list) gets each step's learning rates,
    one per optimizer group, as the step used them. Returns ``(mean loss, accuracy)`` over the batches
    (accuracy a float in [0, 1], measured in train mode, on the batches as they came).
    """
    model.train()
    if before_epoch is not None:
        before_epoch(model)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        # A bar updated by hand: tqdm.auto wrapping the loader would call iter() on it twice (tqdm.asyncio
        # does in __init__), starting the DataLoader's workers twice.
        bar = tqdm(total=len(loader), desc=desc, leave=False)
    total, correct, count = 0.0, 0, 0
    for x, y in loader:
        x, y = _to_device(x, y, device, channels_last)
        loss, logits = train_step(model, optimizer, x, y, scaler=scaler, amp=amp)
        if lrs is not None:
            lrs.append([g["lr"] for g in optimizer.param_groups])
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(y)
        correct += (logits.argmax(dim=1) == y).sum().item()
        count += len(y)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / count:.3f}", refresh=False)
    if bar is not None:
        bar.close()
    return total / max(count, 1), correct / max(count, 1)


def train_epoch(
    model: nn.Module,
    loader: Loader,
    optimizer: Optimizer,
    device: torch.device | str,
    before_epoch: BeforeEpoch | None = None,
) -> float:
    """One pass over ``loader`` with cross-entropy; returns the mean loss (float).

    Calls ``model.train()`` first, as every training loop does, then ``before_epoch(model)`` if given
    (the place where fastai's BnFreeze puts frozen BatchNorm layers back in eval mode).
    ``loader`` yields (images (N, 3, H, W) float32, labels (N,) int64). No mixed precision, no schedule:
    ``fit_one_cycle`` adds those around the same loop.
    """
    return _train_epoch(model, loader, optimizer, torch.device(device), before_epoch)[0]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Loader,
    device: torch.device | str,
    amp: bool | None = None,
    channels_last: bool | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy of ``model`` in eval mode over ``loader``: ``(loss, acc)``.

    ``amp`` and ``channels_last`` as ``fit_one_cycle`` takes them. The model's train/eval mode is restored.
    """
    device = torch.device(device)
    amp = device.type == "cuda" if amp is None else amp
    channels_last = _channels_last_default(device) if channels_last is None else channels_last
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    for x, y in loader:
        x, y = _to_device(x, y, device, channels_last)
        with _autocast(device, amp):
            logits = model(x)
        total += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
        count += len(y)
    model.train(was_training)
    return total / max(count, 1), correct / max(count, 1)


def accuracy(model: nn.Module, loader: Loader, device: torch.device | str) -> float:
    """Top-1 accuracy (float in [0, 1]) of ``model`` over ``loader``; leaves the model in eval mode.

    Full precision and the default memory layout, whatever the device.
    """
    model.eval()
    return evaluate(model, loader, device, amp=False, channels_last=False)[1]


# -- fit_one_cycle ----------------------------------------------------------------------------------------


def _check_arguments(epochs: int, train_loader: Loader, device: torch.device, amp: bool) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if len(train_loader) == 0:
        raise ValueError("train_loader yields no batches")
    if amp and device.type != "cuda":
        raise ValueError("mixed precision here is for CUDA GPUs only")


def _continued_phase(
    scheduler: LRScheduler | None, history: History | dict | None, epochs: int, steps_per_epoch: int
) -> tuple[History, int]:
    """For a run that continues: its ``History`` and how many of its ``epochs`` are done already.

    The scheduler counts the optimizer steps taken (``last_epoch``: one per step here); a checkpoint saved
    by ``on_epoch_end`` holds a whole number of epochs of them.
    """
    if not isinstance(scheduler, LRScheduler):
        raise ValueError("to continue a run, pass its optimizer and its scheduler too (load_checkpoint "
                         "builds the scheduler when given make_scheduler=...)")
    if history is None:
        raise ValueError("to continue a run, pass its history (load_checkpoint returns it)")
    history = History.from_dict(history) if isinstance(history, dict) else history
    planned = getattr(scheduler, "total_steps", epochs * steps_per_epoch)
    if planned != epochs * steps_per_epoch:
        raise ValueError(f"the scheduler was built for {planned} steps, not epochs * len(train_loader) = "
                         f"{epochs * steps_per_epoch}: pass the epochs and loader of the interrupted call")
    done, partial = divmod(scheduler.last_epoch, steps_per_epoch)
    if partial:
        raise ValueError(f"the scheduler stopped {partial} steps into an epoch: continue from a checkpoint "
                         "saved at the end of an epoch (on_epoch_end)")
    recorded = sum(1 for row in history.epochs if row["phase"] == len(history.groups) - 1)
    if not history.groups or recorded != done:
        raise ValueError(f"the history records {recorded} epochs of its last phase, the scheduler {done}: "
                         "pass the history saved with the optimizer and scheduler")
    if done >= epochs:
        raise ValueError(f"all {epochs} epochs of this run are done already")
    return history, done


def fit_one_cycle(
    model: nn.Module,
    layer_lrs: LayerLRs | None,
    train_loader: Loader,
    epochs: int,
    valid_loader: Loader | None = None,
    device: torch.device | str = "cpu",
    *,
    pct_start: float = 0.25,
    div: float = 25.0,
    final_div: float = 1e4,
    weight_decay: float = 0.01,
    before_epoch: BeforeEpoch | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
    history: History | dict | None = None,
    optimizer: Optimizer | None = None,
    scheduler: LRScheduler | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[nn.Module, Optimizer, LRScheduler, History], None] | None = None,
) -> History:
    """Train for ``epochs`` epochs with a one-cycle schedule per layer group; returns the ``History``.

    Args:
        model: on ``device``; what is frozen (``requires_grad=False``) stays out of the optimizer.
        layer_lrs: ``[(group, peak lr), ...]`` as ``one_cycle_optimizer`` takes them (None when continuing).
        train_loader: yields (x (N, ...) float32, y (N,) int64).
        epochs: a positive int.
        pct_start, div, final_div: the one-cycle shape: the rate warms up from ``peak / div`` to the peak over
            ``pct_start`` of the steps, then anneals to ``peak / (div * final_div)`` (``OneCycleLR``'s
            ``div_factor`` and ``final_div_factor``); AdamW's beta1 cycles 0.95 -> 0.85 -> 0.95 meanwhile.
        before_epoch: called as ``before_epoch(model)`` after ``model.train()`` at each epoch's start (to keep
            frozen BatchNorm layers in eval mode, notebook 04).
        amp, channels_last: mixed precision (``amp_dtype``: bfloat16 on GPUs that compute it natively,
            float16 with a ``torch.amp.GradScaler`` on older ones) and channels-last memory for 4-D inputs;
            None means: mixed precision on a GPU only, channels-last on a GPU or the CPU.
        history: a ``History`` to continue: a second phase of training, with a new optimizer; a new one when
            None. With ``optimizer``, the run's own history (or the dict ``load_checkpoint`` returns).
        optimizer, scheduler: to continue an interrupted run from a checkpoint: the optimizer and scheduler
            ``course.checkpoint.load_checkpoint`` rebuilt (``make_scheduler=lambda opt:
            one_cycle_scheduler(opt, epochs * len(train_loader))``), and its ``history``. Pass the
            ``epochs``, loaders and options of the interrupted call: the epochs already done (the scheduler
            counts them) are skipped, the others train exactly as they would have. ``layer_lrs``,
            ``pct_start``, ``div``, ``final_div`` and ``weight_decay`` are then in the optimizer and
            scheduler already, and not used.
        progress: show a tqdm progress bar per epoch.
        on_epoch_end: called as ``on_epoch_end(model, optimizer, scheduler, history)`` after each epoch (to
            save a checkpoint with ``course.checkpoint.save_checkpoint``, say).
    """
    device = torch.device(device)
    amp = device.type == "cuda" if amp is None else amp
    channels_last = _channels_last_default(device) if channels_last is None else channels_last
    _check_arguments(epochs, train_loader, device, amp)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # a layout, not a value: state_dict() is unchanged
    steps = epochs * len(train_loader)
    if optimizer is None:  # a new phase: its own optimizer and schedule
        if scheduler is not None:
            raise ValueError("a scheduler continues the run of its optimizer: pass both, or neither")
        optimizer, groups = one_cycle_optimizer(model, layer_lrs, weight_decay)
        scheduler = one_cycle_scheduler(optimizer, steps, pct_start, div, final_div)
        history = History() if history is None else history
        history.groups.append(groups)
        history.phase_steps.append(steps)
        done = 0
    else:  # the rest of a phase that was interrupted
        history, done = _continued_phase(scheduler, history, epochs, len(train_loader))
    scaler = grad_scaler(device, amp)
    phase = len(history.groups) - 1
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for _ in range(done, epochs):
        epoch = len(history.epochs) + 1
        _sync(device)
        start = time.perf_counter()
        train_loss, train_acc = _train_epoch(
            model, train_loader, optimizer, device, before_epoch, scheduler=scheduler, scaler=scaler, amp=amp,
            channels_last=channels_last, lrs=history.lrs, progress=progress,
            desc=f"{history.label or 'epoch'} {epoch}",
        )
        _sync(device)
        row = {"epoch": epoch, "phase": phase, "train_loss": train_loss, "train_acc": train_acc,
               "valid_loss": None, "accuracy": None, "seconds": history.seconds + time.perf_counter() - start,
               "trainable": trainable}
        if valid_loader is not None:
            row["valid_loss"], row["accuracy"] = evaluate(model, valid_loader, device, amp, channels_last)
        history.epochs.append(row)
        if on_epoch_end is not None:
            on_epoch_end(model, optimizer, scheduler, history)
    return history
