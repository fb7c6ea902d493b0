"""Training with a one-cycle schedule and a learning rate per layer group, and the history it records.

``fit_one_cycle`` trains whatever is trainable: freezing is the caller's decision, made before the call with
``requires_grad``, as notebook 02 taught. It builds AdamW over the trainable parameters only (frozen ones
would otherwise still be decayed or moved by momentum, notebook 03), with no weight decay on 1-D parameters
(biases, BatchNorm), and ``torch.optim.lr_scheduler.OneCycleLR`` with one peak learning rate per group.
On a GPU it uses mixed precision and channels-last memory; a ``tqdm`` bar shows each epoch.
"""
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


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
    epochs: list = field(default_factory=list)
    lrs: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    phase_steps: list = field(default_factory=list)

    def max_lr_of(self, name, phase=-1):
        """Peak learning rate that parameter ``name`` had in ``phase`` (None: not in the optimizer, frozen)."""
        for group in self.groups[phase]:
            if name in group["names"]:
                return group["max_lr"]
        return None

    @property
    def seconds(self):
        """Training wall time in seconds (0.0 before the first epoch)."""
        return self.epochs[-1]["seconds"] if self.epochs else 0.0

    def as_dict(self):
        return {"label": self.label, "epochs": self.epochs, "lrs": self.lrs, "groups": self.groups,
                "phase_steps": self.phase_steps}


def _split_decay(named, lr, weight_decay, layer):
    """Two optimizer groups for one layer group: decayed (>= 2-D weights) and not decayed (biases, norms)."""
    decay = [(n, p) for n, p in named if p.ndim >= 2]
    plain = [(n, p) for n, p in named if p.ndim < 2]
    return [
        {"params": [p for _, p in part], "names": [n for n, _ in part], "lr": lr, "weight_decay": wd,
         "layer": layer}
        for part, wd in ((decay, weight_decay), (plain, 0.0))
        if part
    ]


def one_cycle_optimizer(model, layer_lrs, weight_decay=0.01, betas=(0.9, 0.99)):
    """AdamW (fused, on CPU or CUDA) over the trainable parameters of ``model``, one learning rate per layer group.

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
        params = list(part.parameters()) if isinstance(part, torch.nn.Module) else list(part)
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
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in param_groups for p in g["params"])
    optimizer = torch.optim.AdamW(
        [{k: v for k, v in g.items() if k not in ("names", "layer")} for g in param_groups], betas=betas,
        fused=fused,
    )
    groups = [{k: g[k] for k in ("names", "weight_decay", "layer")} | {"max_lr": g["lr"]} for g in param_groups]
    return optimizer, groups


def _to_device(x, y, device, channels_last):
    """A batch on the device (asynchronously from pinned memory), images channels-last if asked."""
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _channels_last_default(device):
    """Channels-last (NHWC) images by default on CUDA and on the CPU, where oneDNN's convolutions prefer it.

    Measured on a 2-core CPU, EfficientNet-Lite0, batch 32 at 224 px: a full fine-tuning step 3.3 s in NCHW,
    2.1 s channels-last (``python -m tests.benchmarks.freeze_cost``). Other devices keep PyTorch's default.
    """
    return device.type in ("cuda", "cpu")


def amp_dtype(device):
    """The mixed-precision type for a CUDA ``device``: bfloat16 where the GPU computes it natively (compute
    capability 8.0 or newer: A100, L4, H100, RTX 30xx and later), float16 with loss scaling elsewhere.

    Not ``torch.cuda.is_bf16_supported()``: by default it also answers True where bfloat16 is only emulated,
    as on Colab's T4 (capability 7.5), where it is slow and would leave the loss scaler off.
    """
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def grad_scaler(device, amp):
    """A ``torch.amp.GradScaler`` that scales the loss only under float16 autocast (bfloat16 has float32's
    range and needs none; without mixed precision it does nothing)."""
    return torch.amp.GradScaler("cuda", enabled=bool(amp) and amp_dtype(device) == torch.float16)


def _autocast(device, amp):
    if not amp:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast("cuda", dtype=amp_dtype(device))


@torch.no_grad()
def evaluate(model, loader, device, amp=None, channels_last=None):
    """Mean cross-entropy and top-1 accuracy of ``model`` in eval mode over ``loader``: ``(loss, acc)``."""
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


def fit_one_cycle(
    model,
    layer_lrs,
    train_loader,
    epochs,
    valid_loader=None,
    device="cpu",
    *,
    pct_start=0.25,
    div=25.0,
    final_div=1e4,
    weight_decay=0.01,
    before_epoch=None,
    amp=None,
    channels_last=None,
    history=None,
    progress=True,
    on_epoch_end=None,
):
    """Train for ``epochs`` epochs with a one-cycle schedule per layer group; returns the ``History``.

    Args:
        model: on ``device``; what is frozen (``requires_grad=False``) stays out of the optimizer.
        layer_lrs: ``[(group, peak lr), ...]`` as ``one_cycle_optimizer`` takes them.
        train_loader: yields (x (N, ...) float32, y (N,) int64).
        epochs: a positive int.
        pct_start, div, final_div: the one-cycle shape: the rate warms up from ``peak / div`` to the peak over
            ``pct_start`` of the steps, then anneals to ``peak / (div * final_div)`` (``OneCycleLR``'s
            ``div_factor`` and ``final_div_factor``); AdamW's beta1 cycles 0.95 -> 0.85 -> 0.95 meanwhile.
        before_epoch: called as ``before_epoch(model)`` after ``model.train()`` at each epoch's start (to keep
            frozen BatchNorm layers in eval mode, notebook 04).
        amp, channels_last: mixed precision (``amp_dtype``: bfloat16 on GPUs that compute it natively,
            float16 with a ``torch.amp.GradScaler`` on older ones) and channels-last memory for 4-D inputs; None means: mixed precision on a GPU
            only, channels-last on a GPU or the CPU.
        history: a ``History`` to continue (a second phase of training); a new one when None.
        progress: show a tqdm progress bar per epoch.
        on_epoch_end: called as ``on_epoch_end(model, optimizer, scheduler, history)`` after each epoch (to
            save a checkpoint with ``course.checkpoint.save_checkpoint``, say).
    """
    from tqdm.auto import tqdm

    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if len(train_loader) == 0:
        raise ValueError("train_loader yields no batches")
    device = torch.device(device)
    amp = device.type == "cuda" if amp is None else amp
    channels_last = _channels_last_default(device) if channels_last is None else channels_last
    if amp and device.type != "cuda":
        raise ValueError("mixed precision here is for CUDA GPUs only")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer, groups = one_cycle_optimizer(model, layer_lrs, weight_decay)
    total_steps = epochs * len(train_loader)
    if pct_start * total_steps == 1.0:
        # OneCycleLR divides by zero when its warm-up ends at step 0 exactly (4 steps at pct_start=0.25);
        # a warm-up a hair longer gives the same schedule to within a millionth.
        pct_start *= 1 + 1e-6
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["max_lr"] for g in groups],
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div,
        final_div_factor=final_div,
    )
    scaler = grad_scaler(device, amp)
    history = History() if history is None else history
    history.groups.append(groups)
    history.phase_steps.append(epochs * len(train_loader))
    phase = len(history.groups) - 1
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    elapsed = history.seconds
    for _ in range(epochs):
        epoch = len(history.epochs) + 1
        model.train()
        if before_epoch is not None:
            before_epoch(model)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        total, correct, count = 0.0, 0, 0
        # A bar updated by hand: tqdm.auto wrapping the loader would call iter() on it twice (tqdm.asyncio
        # does in __init__), starting the DataLoader's workers twice.
        bar = tqdm(total=len(train_loader), desc=f"{history.label or 'epoch'} {epoch}", leave=False, disable=not progress)
        for x, y in train_loader:
            x, y = _to_device(x, y, device, channels_last)
            with _autocast(device, amp):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            history.lrs.append([g["lr"] for g in optimizer.param_groups])
            scheduler.step()
            total += loss.item() * len(y)
            correct += (logits.argmax(dim=1) == y).sum().item()
            count += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{total / count:.3f}", refresh=False)
        bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed += time.perf_counter() - start
        row = {"epoch": epoch, "phase": phase, "train_loss": total / count, "train_acc": correct / count,
               "valid_loss": None, "accuracy": None, "seconds": elapsed, "trainable": trainable}
        if valid_loader is not None:
            row["valid_loss"], row["accuracy"] = evaluate(model, valid_loader, device, amp, channels_last)
        history.epochs.append(row)
        if on_epoch_end is not None:
            on_epoch_end(model, optimizer, scheduler, history)
    return history
