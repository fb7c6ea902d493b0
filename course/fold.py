"""Fold BatchNorm into the convolution before it: a faster copy of a frozen body.

A frozen body whose BatchNorm layers are in eval mode is a fixed function. Each BatchNorm there computes, per
channel c, ``y = gamma_c * (x - mean_c) / sqrt(var_c + eps) + beta_c`` with constants, an affine map; when ``x``
is the output of a convolution, that map can be moved into the convolution's weights and bias:

    W'_c = W_c * s_c,   b'_c = (b_c - mean_c) * s_c + beta_c,   with s_c = gamma_c / sqrt(var_c + eps)

The folded copy computes the same outputs (to float rounding) with one pass over memory fewer per layer, which
is most of the cost of a small network such as EfficientNet-Lite0 on a CPU. It is only correct while the body
stays frozen and its BatchNorm layers stay in eval mode: fold again after unfreezing or changing it.
"""
import copy

import torch
from torch import nn


def fold_conv_bn(conv, bn):
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


def _after_norm(bn):
    """What ``bn`` does after normalising: nothing, or, for timm's BatchNormAct2d, its dropout and activation."""
    parts = [getattr(bn, name) for name in ("drop", "act") if isinstance(getattr(bn, name, None), nn.Module)]
    return nn.Sequential(*parts) if parts else nn.Identity()


def _fold_children(module):
    """Fold each (Conv2d, BatchNorm2d) pair that sits next to each other among module's children; count them."""
    names = list(module._modules)
    folded = 0
    for conv_name, bn_name in zip(names, names[1:]):
        conv, bn = module._modules[conv_name], module._modules[bn_name]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module._modules[conv_name] = fold_conv_bn(conv, bn)
            module._modules[bn_name] = _after_norm(bn)
            folded += 1
    return folded + sum(_fold_children(child) for child in module.children() if child is not None)


def fold_batchnorm(body, example, rtol=1e-4):
    """A copy of ``body`` in eval mode with every BatchNorm2d folded into the Conv2d declared just before it.

    Pairs are found by the order of the modules in their parent, which is the order they run in for the
    networks of this course (torchvision's ResNets, timm's EfficientNets). Because declaration order is not
    guaranteed to be execution order, the copy is checked against ``body.eval()`` on ``example``.

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
        with torch.no_grad():
            want, got = body(example), folded(example)
    finally:
        for m, training in modes:
            m.training = training
    gap = ((want - got).abs().max() / want.abs().max().clamp_min(1e-12)).item()
    if gap > rtol:
        raise ValueError(f"folding {count} BatchNorm layers changed the outputs by up to {gap:.3g} of their size "
                         f"(> {rtol:g}): "
                         "a BatchNorm here does not follow the convolution declared before it")
    return folded.eval()
