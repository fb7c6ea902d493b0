"""The pet photos and the models the benchmarks share: the same split into training, validation and test
photos as notebook 05 makes (``course.data.train_valid_split``), loaders, and a model factory.

Instructor-side: the strategies themselves are ``course.strategies``; the tools they take are the
reference answers (``benchmarks.reference``).
"""
from dataclasses import dataclass

import torch

from course import seed_everything
from course.data import load_pets, small_subset, train_valid_split
from course.fold import fold_batchnorm
from course.loaders import eval_transform, make_loader, train_transform
from course.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE0_MEAN,
    LITE0_STD,
    efficientnet_lite0,
    lite0_groups,
    resnet34,
)

from .reference import layer_groups as resnet_groups

ARCHS = {  # name: (model factory, layer groups, normalisation mean, std)
    "lite0": (efficientnet_lite0, lite0_groups, LITE0_MEAN, LITE0_STD),
    "resnet34": (resnet34, resnet_groups, IMAGENET_MEAN, IMAGENET_STD),
}


@dataclass
class Setup:
    """The photos of one benchmark run: datasets (``train``, ``train_plain``, ``valid``, ``test``), their
    loaders (``train_loader`` augmented and shuffled, ``valid_loader``, ``test_loader``), the number of
    classes, device, and what was asked for."""

    train: object
    train_plain: object
    valid: object
    test: object
    train_loader: object
    valid_loader: object
    test_loader: object
    classes: int
    device: torch.device
    arch: str
    size: int
    batch: int

    def new_model(self, seed, pretrained=True):
        """A fresh model with a new head (seeded with ``seed``) on the device, and its layer groups."""
        make, groups, *_ = ARCHS[self.arch]
        seed_everything(seed)
        model = make(num_classes=self.classes, pretrained=pretrained).to(self.device)
        return model, groups(model)


def make_setup(root, size=224, batch=32, device="cpu", per_class=None, seed=0, arch="lite0",
               valid_fraction=0.2, split_seed=0):
    """The trainval photos under ``root`` split into training and validation (``split_seed``; the same split
    for every seed), the test photos apart; at most ``per_class`` photos of each breed (chosen with
    ``split_seed``) when given. ``seed`` shuffles the training loader."""
    _, _, mean, std = ARCHS[arch]

    def photos(split, transform):
        dataset = load_pets(split, transform, root=root)
        return dataset, (dataset if per_class is None else small_subset(dataset, per_class, split_seed))

    whole, augmented = photos("trainval", train_transform(size, mean, std))
    classes = len(whole.classes)   # every breed of the data set, whether or not a subset holds it
    # the same split of both views; the validation photos are the plain (not augmented) view's
    train, _, train_plain, valid = train_valid_split(augmented,
                                                     photos("trainval", eval_transform(size, mean, std))[1],
                                                     valid_fraction=valid_fraction, seed=split_seed)
    test = photos("test", eval_transform(size, mean, std))[1]
    device = torch.device(device)
    return Setup(train, train_plain, valid, test, make_loader(train, batch, True, device, seed=seed),
                 make_loader(valid, 64, False, device), make_loader(test, 64, False, device), classes, device,
                 arch, size, batch)


class FoldedBody:
    """A frozen body run as folded copies (``course.fold``: BatchNorm and padding in the convolutions),
    channels-last, one copy per image size, each made (0.3 s for Lite0) and checked on its first batch.

    Calling it on (N, 3, H, W) images gives the body's features; the body itself is put in eval mode.
    """

    def __init__(self, body):
        self.body, self.copies = body.eval(), {}

    def __call__(self, x):
        size = tuple(x.shape[-2:])
        if size not in self.copies:
            self.copies[size] = fold_batchnorm(self.body, x[:2]).to(memory_format=torch.channels_last)
        return self.copies[size](x.contiguous(memory_format=torch.channels_last))


@torch.no_grad()
def features_of(body, dataset, device, batch=64):
    """Pooled backbone features (N, D) on the CPU and labels (N,), dataset order.

    ``body``: a ``FoldedBody``, or a module to run as one (pass one ``FoldedBody`` to several calls: it folds
    once per image size).
    """
    run = body if isinstance(body, FoldedBody) else FoldedBody(body)
    loader = make_loader(dataset, batch, False, device)
    feats, labels = [], []
    for x, y in loader:
        feats.append(run(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)
