"""Fold BatchNorm into the convolution before it: a faster copy of a frozen body.

A frozen body whose BatchNorm layers are in eval mode is a fixed function. Each BatchNorm there computes,
per channel c, ``y = gamma_c * (x - mean_c) / sqrt(var_c + eps) + beta_c`` with constants, an affine map;
when ``x`` is the output of a convolution, that map can be moved into the convolution's weights and bias:

    W'_c = W_c * s_c,   b'_c = (b_c - mean_c) * s_c + beta_c,   with s_c = gamma_c / sqrt(var_c + eps)

The folded copy computes the same outputs (to float rounding) with one pass over memory fewer per layer,
which is most of the cost of a small network such as EfficientNet-Lite0 on a CPU. It is only correct while
the body stays frozen and its BatchNorm layers stay in eval mode: fold again after unfreezing or changing it.

The copy also drops a second per-call cost of TensorFlow-ported networks (timm's ``tf_`` EfficientNets):
their stride-2 convolutions use TensorFlow's "same" padding, one more pixel after the image than before it,
which ``nn.Conv2d`` cannot express, so timm's ``Conv2dSame`` writes a padded copy of its input on every call.
For inputs of one size that padding is fixed, and one zero row and column put before the kernel turn it into
ordinary symmetric padding: ``SizedConv2d``, exact, since the zeros only ever multiply inputs.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new ``conv`` whose output is ``bn(conv(x))`` with ``bn`` in eval mode.

    Args:
        conv: an ``nn.Conv2d`` (or subclass) with C_out output channels, with or without bias.
        bn: an ``nn.BatchNorm2d`` over C_out channels, with running statistics.

    Returns: a deep copy of ``conv`` with weight (C_out, C_in/groups, kH, kW) and bias (C_out,) folded; its
    parameters keep ``conv.weight.requires_grad``. Neither argument is changed.
    """
    if bn.running_mean is None:
        raise ValueError(f"{bn} has no running statistics to fold")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"{bn} follows a convolution with {conv.out_channels} output channels")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)  # (C_out,)
        if bn.affine:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.affine:
            shift = shift + bn.bias
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded = copy.deepcopy(conv)
        folded.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1),
                                     requires_grad=conv.weight.requires_grad)
        folded.bias = nn.Parameter(bias * scale + shift, requires_grad=conv.weight.requires_grad)
    return folded


def _after_norm(bn: nn.BatchNorm2d) -> nn.Module:
    """What ``bn`` does after normalising: nothing, or, for timm's BatchNormAct2d, its dropout and
    activation."""
    parts = [getattr(bn, name) for name in ("drop", "act") if isinstance(getattr(bn, name, None), nn.Module)]
    return nn.Sequential(*parts) if parts else nn.Identity()


def _fold_children(module: nn.Module) -> int:
    """Fold each (Conv2d, BatchNorm2d) pair that sits next to each other among module's children; count
    them."""
    names = list(module._modules)
    folded = 0
    for conv_name, bn_name in zip(names, names[1:]):
        conv, bn = module._modules[conv_name], module._modules[bn_name]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module._modules[conv_name] = fold_conv_bn(conv, bn)
            module._modules[bn_name] = _after_norm(bn)
            folded += 1
    return folded + sum(_fold_children(child) for child in module.children() if child is not None)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's "same" padding of one spatial dimension, as timm pads it: ``(before, after)`` pixels.

    ``size`` input pixels give ``ceil(size / stride)`` outputs; the padding needed for that is split with
    the odd pixel after the input.
    """
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SizedConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that computes a "same"-padded convolution for inputs of one height and width.

    Built by ``static_same_conv``; ``same_pads`` holds the ``((top, bottom), (left, right))`` padding it
    stands for. Inputs that would need another padding are refused: for them its outputs would be shifted or
    of the wrong size.
    """

    def __init__(self, *args: Any, same_pads: tuple[tuple[int, int], tuple[int, int]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.same_pads = tuple(same_pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = tuple(same_padding(n, k, s, d) for n, k, s, d in
                     zip(x.shape[-2:], self.original_kernel, self.stride, self.dilation))
        if pads != self.same_pads:
            raise ValueError(f"this convolution was folded for inputs padded {self.same_pads}, and inputs of "
                             f"size {tuple(x.shape[-2:])} need {pads}: fold again with an example of that "
                             "size")
        return super().forward(x)

    @property
    def original_kernel(self) -> tuple[int, int]:
        """The kernel size before the zero row or column was put in front of it, ``(kH, kW)``."""
        return tuple(k - (after - before) for k, (before, after) in zip(self.kernel_size, self.same_pads))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, same_pads={self.same_pads}"


def static_same_conv(conv: nn.Conv2d, in_size: tuple[int, int]) -> SizedConv2d | None:
    """A ``SizedConv2d`` computing ``conv`` (timm's ``Conv2dSame``) for inputs of ``in_size`` = (H, W).

    Where the padding is symmetric it becomes the convolution's own padding; where the extra pixel goes
    after the input, the kernel (C_out, C_in/groups, kH, kW) gets one zero row (or column) in front and the
    padding grows by one on both sides, which shifts the kernel back over the same pixels.

    Returns ``None`` when that is not possible (dilation above 1 in a dimension that needs the shift).
    """
    pads = tuple(same_padding(n, k, s, d) for n, k, s, d in
                 zip(in_size, conv.kernel_size, conv.stride, conv.dilation))
    if any(after - before and d != 1 for (before, after), d in zip(pads, conv.dilation)):
        return None
    grow = [after - before for before, after in pads]  # 0 or 1 per dimension
    new = SizedConv2d(conv.in_channels, conv.out_channels,
                      tuple(k + g for k, g in zip(conv.kernel_size, grow)), stride=conv.stride,
                      padding=tuple(after for _, after in pads), dilation=conv.dilation, groups=conv.groups,
                      bias=conv.bias is not None, same_pads=pads, device="meta", dtype=conv.weight.dtype)
    new = new.to_empty(device=conv.weight.device)  # built on "meta": no random initialisation, which would
    with torch.no_grad():                          # draw from (and so change) PyTorch's global random numbers
        new.weight.zero_()
        new.weight[:, :, grow[0]:, grow[1]:] = conv.weight
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    new.requires_grad_(conv.weight.requires_grad)
    return new.train(conv.training)


def _same_conv_class() -> type[nn.Conv2d] | tuple[()]:
    """timm's ``Conv2dSame``, or ``()`` (matches nothing) when timm is not installed: then no model has
    one."""
    try:
        from timm.layers import Conv2dSame
    except ImportError:
        return ()
    return Conv2dSame


def _fix_same_padding(module: nn.Module, example: torch.Tensor) -> None:
    """Replace each of module's ``Conv2dSame`` by a ``SizedConv2d`` for the size it sees on ``example``.

    A convolution that runs on inputs of several sizes in one forward (a shared module) is left as it is.
    """
    sizes = {}
    hooks = [m.register_forward_pre_hook(
                 lambda m, args: sizes.setdefault(m, set()).add(tuple(args[0].shape[-2:])))
             for m in module.modules() if isinstance(m, _same_conv_class())]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for hook in hooks:
            hook.remove()
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            seen = sizes.get(child, ())
            new = static_same_conv(child, *seen) if len(seen) == 1 else None
            if new is not None:
                setattr(parent, name, new)


def fold_batchnorm(body: nn.Module, example: torch.Tensor, rtol: float = 1e-4) -> nn.Module:
    """A copy of ``body`` in eval mode with every BatchNorm2d folded into the Conv2d declared just before it.

    Pairs are found by the order of the modules in their parent, which is the order they run in for the
    networks of this course (torchvision's ResNets, timm's EfficientNets). Because declaration order is
    not guaranteed to be execution order, the copy is checked against ``body.eval()`` on ``example``. timm's
    ``Conv2dSame`` convolutions are replaced by ``SizedConv2d`` for the sizes they see on ``example``: the
    copy refuses inputs of a size that would need another padding.

    Args:
        body: the module to fold; it is not changed (each submodule's mode is restored).
        example: an input batch, e.g. (N, 3, H, W) images, on the body's device.
        rtol: largest difference allowed between the outputs of the copy and of the body, as a fraction of
            the body's largest output (float32 rounding over many layers stays far below 1e-4).

    Returns: the folded copy, in eval mode, its parameters frozen as the body's were.

    Raises:
        ValueError: the copy's outputs differ from the body's on ``example`` by more than that.
    """
    modes = [(m, m.training) for m in body.modules()]  # restored one by one: some may be in eval already
    body.eval()
    try:
        folded = copy.deepcopy(body)
        count = _fold_children(folded)
        _fix_same_padding(folded, example)
        with torch.no_grad():
            want, got = body(example), folded(example)
    finally:
        for m, training in modes:
            m.training = training
    gap = ((want - got).abs().max() / want.abs().max().clamp_min(1e-12)).item()
    if gap > rtol:
        raise ValueError(f"folding {count} BatchNorm layers changed the outputs by up to {gap:.3g} of their "
                         f"size (> {rtol:g}): "
                         "a BatchNorm here does not follow the convolution declared before it")
    return folded.eval()
