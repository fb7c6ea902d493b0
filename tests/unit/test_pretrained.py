"""The offline EfficientNet-Lite0, its layer groups, the ResNet-34 path, and the cost measurements."""
import urllib.error

import pytest
import torch
from torch import nn

from course.measure import optimizer_state_bytes, saved_activation_bytes, train_step_cost
from course.pretrained import (
    LITE0_MEAN,
    LITE0_STD,
    efficientnet_lite0,
    lite0_body_head,
    lite0_groups,
    lite0_key,
    resnet34,
)


def test_lite0_key_renames_blocks_by_stage():
    assert lite0_key("_conv_stem.weight") == "conv_stem.weight"
    assert lite0_key("_bn0.running_mean") == "bn1.running_mean"
    assert lite0_key("_blocks.0._depthwise_conv.weight") == "blocks.0.0.conv_dw.weight"
    assert lite0_key("_blocks.0._project_conv.weight") == "blocks.0.0.conv_pw.weight"
    assert lite0_key("_blocks.1._expand_conv.weight") == "blocks.1.0.conv_pw.weight"
    assert lite0_key("_blocks.2._bn2.bias") == "blocks.1.1.bn3.bias"
    assert lite0_key("_blocks.15._project_conv.weight") == "blocks.6.0.conv_pwl.weight"
    assert lite0_key("_fc.bias") == "classifier.bias"
    with pytest.raises(KeyError):
        lite0_key("_blocks.16._bn0.weight")
    with pytest.raises(KeyError):
        lite0_key("_mystery.weight")


def _photo(shared_data, name):
    import torchvision.transforms as T
    from PIL import Image

    path = shared_data / "pets-3breeds" / "oxford-iiit-pet" / "images" / name
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(LITE0_MEAN, LITE0_STD)])
    return tf(Image.open(path).convert("RGB"))


def test_lite0_recognises_real_pets_with_imagenet_weights(shared_data):
    """Strict loading is not enough: the renamed weights must see cats as cats and dogs as dogs."""
    model = efficientnet_lite0().eval()
    photos = torch.stack([_photo(shared_data, n)
                          for n in ("Abyssinian_1.jpg", "Bengal_1.jpg", "american_bulldog_10.jpg")])
    with torch.no_grad():
        top1 = model(photos).argmax(dim=1).tolist()
    cats, dogs = range(281, 286), range(151, 269)  # ImageNet: domestic cats 281-285, dogs 151-268
    assert top1[0] in cats and top1[1] in cats and top1[2] in dogs, top1


def test_lite0_new_head_and_groups():
    model = efficientnet_lite0(num_classes=5, pretrained=False)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    groups = lite0_groups(model)
    assert len(groups) == 10 and groups[-1] is model.classifier
    ids = [id(p) for g in groups for p in g.parameters()]
    assert ids == [id(p) for p in model.parameters()], "groups cover every parameter once, input to output"
    for p in groups[0].parameters():
        p.requires_grad_(False)
    assert not model.conv_stem.weight.requires_grad, "groups hold the model's own modules"


def test_lite0_body_and_head_are_the_model_split_in_two():
    """head(body(x)) == model(x) in eval mode; the body holds every parameter but the classifier's, shared."""
    torch.manual_seed(0)
    model = efficientnet_lite0(num_classes=4, pretrained=False).eval()
    body, head = lite0_body_head(model)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(head(body(x)), model(x))
        assert body(x).shape == (3, 1280)
    body_ids = {id(p) for p in body.parameters()}
    assert body_ids == {id(p) for p in model.parameters()} - {id(p) for p in model.classifier.parameters()}
    body.train()
    assert model.bn1.training and not model.classifier.training, \
        "body.train() reaches the model's own modules"


def test_lite0_pretrained_as_loaded_is_trainable_and_in_train_mode():
    model = efficientnet_lite0(num_classes=3)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_resnet34_offline_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="efficientnet_lite0"):
        resnet34(num_classes=37)
    model = resnet34(num_classes=37, pretrained=False)
    assert model.fc.out_features == 37


def test_saved_activation_bytes_counts_what_backward_needs():
    x = torch.randn(100, 10, requires_grad=True)
    _, nbytes = saved_activation_bytes(nn.Identity(), lambda: torch.exp(x))
    assert nbytes == 100 * 10 * 4, "exp saves its float32 output"
    lin = nn.Linear(10, 5)
    _, nbytes = saved_activation_bytes(lin, lambda: lin(torch.randn(8, 10)))
    assert nbytes == 8 * 10 * 4, "a Linear saves its input; its own weight does not count"
    lin.requires_grad_(False)
    _, nbytes = saved_activation_bytes(lin, lambda: lin(torch.randn(8, 10)))
    assert nbytes == 0, "nothing is saved when nothing requires grad"


def test_train_step_cost_and_optimizer_state():
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))
    cost = train_step_cost(net, x, y, repeats=2)
    assert cost["backward_s"] > 0 and cost["forward_s"] > 0 and cost["saved_bytes"] > 0
    assert all(p.grad is None for p in net.parameters()), "gradients are reset after measuring"
    net.requires_grad_(False)
    frozen = train_step_cost(net, x, y, repeats=1)
    assert frozen["backward_s"] == 0.0 and frozen["saved_bytes"] == 0
    net.requires_grad_(True)
    opt = torch.optim.AdamW(net.parameters())
    assert optimizer_state_bytes(opt) == 0
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    n = sum(p.numel() for p in net.parameters())
    assert optimizer_state_bytes(opt) == 2 * 4 * n + 4 * 4, \
        "exp_avg and exp_avg_sq per parameter, plus a step count each"
