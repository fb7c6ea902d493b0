"""Measuring what freezing saves: time of a training step and the memory autograd keeps for backward."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

T = TypeVar("T")


def saved_activation_bytes(model: nn.Module, fn: Callable[[], T]) -> tuple[T, int]:
    """Call ``fn()`` and count the bytes of tensors autograd saves for backward while it runs.

    Storages shared by several saved tensors count once, and the model's own parameters do not count
    (they exist anyway): what remains is the activation memory that training pays for and a frozen prefix
    does not. Returns ``(fn's result, bytes as int)``. Works on any device, the CPU included.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params:
            seen[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return result, sum(seen.values())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step_cost(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    """Median seconds of forward and of backward for one cross-entropy step, and the memory it keeps.

    Args:
        model: in train mode, on the same device as ``x``; its ``.grad`` are reset to None after each
            repeat.
        x: input batch (N, ...) float32; y: labels (N,) int64.
        repeats: timed repeats after one untimed warm-up.

    Returns:
        dict with ``forward_s`` and ``backward_s`` (median seconds), ``saved_bytes`` (activation memory
        autograd held for backward), and on CUDA ``peak_bytes`` (``torch.cuda.max_memory_allocated``).
        ``backward_s`` is 0.0 when nothing requires grad (no backward to run).
    """
    device = x.device
    forward, backward = [], []
    saved = 0
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        t0 = time.perf_counter()
        loss, saved = saved_activation_bytes(model, lambda: F.cross_entropy(model(x), y))
        _sync(device)
        t1 = time.perf_counter()
        if loss.requires_grad:
            loss.backward()
        _sync(device)
        t2 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        if i > 0:
            forward.append(t1 - t0)
            backward.append(t2 - t1 if loss.requires_grad else 0.0)
    out = {"forward_s": _median(forward), "backward_s": _median(backward), "saved_bytes": saved}
    if device.type == "cuda":
        out["peak_bytes"] = torch.cuda.max_memory_allocated(device)
    return out


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors an optimizer keeps per parameter (Adam: ``exp_avg``, ``exp_avg_sq``; SGD:
    momentum).

    Counts ``optimizer.state`` only, which fills on the first ``step()`` for parameters that had a gradient.
    Returns an int.
    """
    return sum(
        v.numel() * v.element_size()
        for state in optimizer.state.values()
        for v in state.values()
        if torch.is_tensor(v)
    )
