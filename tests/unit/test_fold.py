"""Folding BatchNorm into convolutions: the same function as the frozen body in eval mode, checked against
PyTorch's own fusion and on the course's real backbones."""
import pytest
import torch
import torchvision
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from course.fold import SizedConv2d, fold_batchnorm, fold_conv_bn, same_padding, static_same_conv
from course.pretrained import efficientnet_lite0, lite0_body_head


def _bn_with_statistics(channels, affine=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels, affine=affine)
    bn.running_mean.copy_(torch.randn(channels, generator=g))
    bn.running_var.copy_(torch.rand(channels, generator=g) + 0.1)
    if affine:
        with torch.no_grad():
            bn.weight.copy_(torch.randn(channels, generator=g))
            bn.bias.copy_(torch.randn(channels, generator=g))
    return bn.eval()


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("affine", [True, False])
def test_fold_conv_bn_matches_pytorch_fusion_and_the_pair(bias, groups, affine):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, padding=1, groups=groups, bias=bias).eval()
    bn = _bn_with_statistics(12, affine=affine)
    x = torch.randn(2, 8, 9, 9)
    folded = fold_conv_bn(conv, bn)
    with torch.no_grad():
        want = bn(conv(x))
        torch.testing.assert_close(folded(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(folded(x), fuse_conv_bn_eval(conv, bn)(x), rtol=1e-5, atol=1e-5)
    assert folded.bias is not None and folded is not conv
    # the original keeps its own parameters
    assert conv.bias is None if not bias else conv.bias.shape == (12,)


def test_fold_keeps_requires_grad_and_does_not_touch_the_original():
    conv = nn.Conv2d(3, 4, 1, bias=False).requires_grad_(False)
    bn = _bn_with_statistics(4)
    before = conv.weight.clone()
    folded = fold_conv_bn(conv, bn)
    assert not folded.weight.requires_grad and not folded.bias.requires_grad
    assert torch.equal(conv.weight, before)
    with pytest.raises(ValueError, match="output channels"):
        fold_conv_bn(conv, _bn_with_statistics(5))


def test_fold_batchnorm_on_the_pretrained_lite0_body():
    """Every BatchNorm of EfficientNet-Lite0 (timm's BatchNormAct2d, with its ReLU6) folds; same features."""
    model = efficientnet_lite0(num_classes=3)
    body, _ = lite0_body_head(model)
    body.requires_grad_(False)
    # as the course leaves frozen BatchNorm layers: that mode must survive, and train mode too
    body.bn1.eval()
    x = torch.randn(2, 3, 96, 96)
    folded = fold_batchnorm(body, x)
    assert not body.bn1.training and body.bn2.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert model.training and body.training  # the body's mode is restored
    assert not any(p.requires_grad for p in folded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), body.eval()(x), rtol=1e-4, atol=1e-4)
    # the folded copy is a copy: training the model later leaves it as it was, and the reverse
    assert all(p.data_ptr() != q.data_ptr() for p in folded.parameters() for q in body.parameters())


def test_fold_batchnorm_on_a_resnet_with_downsampling_shortcuts():
    model = torchvision.models.resnet18(weights=None, num_classes=5)
    for m in model.modules():  # statistics that are not the identity, so that folding has something to do
        if isinstance(m, nn.BatchNorm2d):
            m.load_state_dict(_bn_with_statistics(m.num_features, seed=m.num_features).state_dict())
    x = torch.randn(2, 3, 64, 64)
    folded = fold_batchnorm(model, x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model.eval()(x), rtol=1e-4, atol=1e-4)


class _DeclaredOutOfOrder(nn.Module):
    """The BatchNorm is declared after the convolution but runs before it: folding them would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = _bn_with_statistics(4)

    def forward(self, x):
        return self.conv(self.bn(x))


def test_fold_batchnorm_refuses_when_the_outputs_change():
    model = _DeclaredOutOfOrder()
    with pytest.raises(ValueError, match="does not follow the convolution"):
        fold_batchnorm(model, torch.randn(2, 4, 8, 8))


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("size", [(16, 16), (15, 16), (7, 9)])
@pytest.mark.parametrize("stride", [1, 2])
def test_static_same_conv_computes_timms_same_padding(kernel, size, stride, monkeypatch):
    """For every input size the rewritten convolution equals timm's Conv2dSame on that size, odd or even,
    with the padding's odd pixel after the input (a zero row or column put before the kernel) or none, and
    without the padded copy of its input that Conv2dSame makes on every call."""
    from timm.layers import Conv2dSame

    torch.manual_seed(kernel)
    conv = Conv2dSame(6, 6, kernel, stride=stride, groups=3, bias=True)
    x = torch.randn(2, 6, *size)
    static = static_same_conv(conv, size)
    pads = []
    pad = torch.nn.functional.pad
    monkeypatch.setattr(torch.nn.functional, "pad", lambda *a, **k: pads.append(a[1]) or pad(*a, **k))
    with torch.no_grad():
        want = conv(x)
        assert len(pads) == 1  # Conv2dSame pads a copy of its input...
        torch.testing.assert_close(static(x), want, rtol=1e-5, atol=1e-5)
        assert len(pads) == 1  # ...the rewritten convolution does not
    assert static.original_kernel == (kernel, kernel)


def test_static_same_conv_refuses_sizes_that_need_another_padding():
    from timm.layers import Conv2dSame

    conv = Conv2dSame(2, 2, 3, stride=2)
    static = static_same_conv(conv, (8, 8))  # needs (0, 1) padding each way; 9 px would need (1, 1)
    assert static.kernel_size == (4, 4) and static.padding == (1, 1)
    # same parity: fine
    assert static(torch.randn(1, 2, 10, 10)).shape == conv(torch.randn(1, 2, 10, 10)).shape
    with pytest.raises(ValueError, match=r"fold again"):
        static(torch.randn(1, 2, 9, 8))
    assert same_padding(224, 3, 2) == (0, 1) and same_padding(224, 5, 2) == (1, 2) \
        and same_padding(7, 3, 1) == (1, 1)
    dilated = Conv2dSame(2, 2, 3, stride=2, dilation=2)
    # padded (1, 2): a zero in front cannot shift a dilated kernel
    assert static_same_conv(dilated, (8, 8)) is None
    x = torch.randn(1, 2, 7, 7)  # padded (2, 2): plain padding does
    with torch.no_grad():
        torch.testing.assert_close(static_same_conv(dilated, (7, 7))(x), dilated(x))


def test_folded_lite0_body_has_no_padding_copies_and_knows_its_size():
    """The folded Lite0 body has no Conv2dSame left (its 5 stride-2 convolutions become SizedConv2d), and
    refuses an input whose padding differs instead of returning shifted features."""
    from timm.layers import Conv2dSame

    body, _ = lite0_body_head(efficientnet_lite0(num_classes=3))
    x = torch.randn(1, 3, 64, 64)
    folded = fold_batchnorm(body, x)
    assert any(isinstance(m, Conv2dSame) for m in body.modules())  # the original keeps them
    assert not any(isinstance(m, Conv2dSame) for m in folded.modules())
    assert sum(isinstance(m, SizedConv2d) for m in folded.modules()) == 5
    with torch.no_grad():
        assert folded(torch.randn(1, 3, 128, 128)).shape == body(torch.randn(1, 3, 128, 128)).shape
        with pytest.raises(ValueError, match="fold again"):
            folded(torch.randn(1, 3, 66, 66))  # 33 px at the second stride-2 convolution: padded (1, 1)


def test_folding_draws_no_random_numbers():
    """Folding is deterministic and leaves PyTorch's random stream alone: data augmentation drawn after it
    (the feature cache folds between batches) is the same as without folding."""
    body, _ = lite0_body_head(efficientnet_lite0(num_classes=3))
    x = torch.randn(1, 3, 64, 64)
    torch.manual_seed(0)
    fold_batchnorm(body, x)
    after_folding = torch.rand(4)
    torch.manual_seed(0)
    assert torch.equal(after_folding, torch.rand(4))
