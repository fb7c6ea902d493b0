"""course.probe: the body cut at each depth, the linear probe, feature distortion (notebooks 05 and 06)."""
import pytest
import torch

from course.pretrained import efficientnet_lite0
from course.probe import LITE0_DEPTHS, body_up_to, feature_distortion, probe_accuracy


def test_body_up_to_cuts_lite0_after_each_group_and_shares_its_modules():
    torch.manual_seed(0)
    model = efficientnet_lite0(num_classes=3, pretrained=False).eval()
    x = torch.randn(2, 3, 32, 32)
    widths = [body_up_to(model, d)(x).shape for d in range(LITE0_DEPTHS)]
    assert widths[0] == (2, 32) and widths[-1] == (2, 1280), widths
    assert [w[1] for w in widths[1:-1]] == [16, 24, 40, 80, 112, 192, 320], "one stage more each time"
    with torch.no_grad():
        full = model.forward_head(model.forward_features(x), pre_logits=True)
        assert torch.allclose(body_up_to(model, 8)(x), full, atol=1e-5), "depth 8: what the head reads"
    assert body_up_to(model, 3)[0] is model.conv_stem, "no copy: the model's own modules"
    for bad in (-1, LITE0_DEPTHS):
        with pytest.raises(ValueError, match="depth must be"):
            body_up_to(model, bad)


def test_probe_accuracy_reads_what_a_linear_classifier_can():
    torch.manual_seed(0)
    y = torch.arange(60) % 3
    centres = torch.randn(3, 8) * 5
    x = centres[y] + torch.randn(60, 8)
    assert probe_accuracy((x[:45], y[:45]), (x[45:], y[45:]), 3) == 1.0, "separable classes"
    noise = torch.randn(60, 8)
    assert probe_accuracy((noise[:45], y[:45]), (noise[45:], y[45:]), 3) < 0.7, "features that carry nothing"
    assert probe_accuracy((x[:45], y[:45]), (x[45:], y[45:]), 3, seed=1) == \
        probe_accuracy((x[:45], y[:45]), (x[45:], y[45:]), 3, seed=1), "seeded"


def test_feature_distortion_is_the_mean_relative_move():
    before = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert feature_distortion(before, before.clone()) == 0.0
    after = torch.tensor([[3.0, 9.0], [1.0, 1.0]])   # moved 5 of 5, and 1 of 1
    assert feature_distortion(before, after) == pytest.approx(1.0)
    assert feature_distortion(before, 2 * before) == pytest.approx(1.0)
    assert feature_distortion(before, before * 1.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="same photos"):
        feature_distortion(before, before[:1])
