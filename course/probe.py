"""What the features after each layer group tell a linear classifier, and how far fine-tuning moves them.

- ``body_up_to(model, depth)``: EfficientNet-Lite0 cut after layer group ``depth`` and average-pooled, a body
  whose features a probe reads (notebooks 05, section 9, and 06, section 1).
- ``probe_accuracy(train_xy, valid_xy, n_classes)``: the validation accuracy of a linear classifier trained on
  cached features (notebooks 05 and 06, ``benchmarks.which_layers``).
- ``feature_distortion(before, after)``: how far the features of the same photos moved, relative to where
  they were (Kumar et al., ICLR 2022; notebook 06, section 7).

Nothing here caches features: notebook 05's ``cache_features`` (an exercise) does, and its output is what
these functions take.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.efficientnet import EfficientNet
from torch import nn

LITE0_DEPTHS = 9
"""Cut points of ``body_up_to``: 0 = the stem, 1-7 = after each stage of blocks, 8 = after the head
convolution (the features the classifier reads)."""


def body_up_to(model: EfficientNet, depth: int) -> nn.Sequential:
    """Lite0 from the input to layer group ``depth`` (0 = stem, 1-7 = block stages, 8 = head convolution),
    then global average pooling: images (N, 3, H, W) -> features (N, C). Shares ``model``'s modules (no
    copy)."""
    if not 0 <= depth < LITE0_DEPTHS:
        raise ValueError(f"depth must be 0..{LITE0_DEPTHS - 1} (stem, 7 stages, head convolution), "
                         f"got {depth}")
    layers = [model.conv_stem, model.bn1, *model.blocks[:depth]]
    if depth == LITE0_DEPTHS - 1:
        layers = [model.conv_stem, model.bn1, *model.blocks, model.conv_head, model.bn2]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def probe_accuracy(train_xy: tuple[torch.Tensor, torch.Tensor], valid_xy: tuple[torch.Tensor, torch.Tensor],
                   n_classes: int, steps: int = 300, lr: float = 1e-2, seed: int = 0) -> float:
    """Validation accuracy (a fraction) of a linear classifier on cached features.

    The features (N, D) are standardised with the training rows' mean and spread; the classifier is trained
    full batch for ``steps`` AdamW steps at ``lr`` (weight decay 0.01), initialised after
    ``torch.manual_seed(seed)`` (which reseeds torch's global generator).
    ``train_xy`` and ``valid_xy`` are ``(features (N, D) float, labels (N,) int64)``.
    """
    (xt, yt), (xv, yv) = train_xy, valid_xy
    mean, std = xt.mean(0), xt.std(0) + 1e-6
    torch.manual_seed(seed)   # as notebook 05 first seeded it: its figures stay the same
    probe = nn.Linear(xt.shape[1], n_classes)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(probe((xt - mean) / std), yt).backward()
        opt.step()
    with torch.no_grad():
        return (probe((xv - mean) / std).argmax(1) == yv).float().mean().item()


def feature_distortion(before: torch.Tensor, after: torch.Tensor) -> float:
    """Mean over photos of ||after_i - before_i|| / ||before_i||: how far the features (N, D) of the same N
    photos moved (0.0: not at all; 1.0: as far as they were from zero)."""
    if before.shape != after.shape or before.ndim != 2:
        raise ValueError(f"features of the same photos, both (N, D): got {tuple(before.shape)} and "
                         f"{tuple(after.shape)}")
    before, after = before.double(), after.double()
    return ((after - before).norm(dim=1) / before.norm(dim=1).clamp_min(1e-12)).mean().item()
