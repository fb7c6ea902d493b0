"""Watching BatchNorm's running statistics: snapshots and how far they drift."""
from __future__ import annotations

import torch
from torch import nn


def bn_stats(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module path: (running_mean, running_var)} cloned, for every module that has both buffers.

    Covers nn.BatchNorm1d/2d/3d, SyncBatchNorm and torchvision's FrozenBatchNorm2d alike.
    Tensors are float32 copies of shape (C,).
    """
    out = {}
    for name, module in model.named_modules():
        mean, var = getattr(module, "running_mean", None), getattr(module, "running_var", None)
        if torch.is_tensor(mean) and torch.is_tensor(var):
            out[name] = (mean.detach().clone().float(), var.detach().clone().float())
    return out


def bn_drift(before: dict[str, tuple[torch.Tensor, torch.Tensor]], model: nn.Module) -> dict[str, float]:
    """{module path: relative change of its running mean} since the snapshot ``before`` (from ``bn_stats``).

    The change is ``‖mean − mean_before‖ / (‖mean_before‖ + 1e-12)``: 0.0 means untouched. Modules missing
    from ``model`` are left out; order follows ``before``.
    """
    now = bn_stats(model)
    return {
        name: ((now[name][0] - mean0).norm() / (mean0.norm() + 1e-12)).item()
        for name, (mean0, _) in before.items()
        if name in now
    }
