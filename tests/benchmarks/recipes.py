"""The four fine-tuning strategies of notebook 05, and cached features, for EfficientNet-Lite0 on pet photos.

Instructor-side code: the notebook's students write ``fine_tune`` and the feature cache themselves, so this
module is not part of ``course/``. Every strategy trains with ``course.fit.fit_one_cycle``, keeps BatchNorm
layers whose parameters are all frozen in eval mode (notebook 04), and evaluates on the test split after
every epoch.
"""
from dataclasses import dataclass

import torch
from torch import nn

from course import seed_everything
from course.data import load_pets, small_subset
from course.fit import History, fit_one_cycle
from course.fold import fold_batchnorm
from course.loaders import eval_transform, make_loader, train_transform
from course.pretrained import (IMAGENET_MEAN, IMAGENET_STD, LITE0_MEAN, LITE0_STD, efficientnet_lite0,
                               lite0_body_head, lite0_groups, resnet34)


def set_frozen_prefix(groups, n):
    """groups[:n] frozen, the rest trainable."""
    for i, group in enumerate(groups):
        group.requires_grad_(i >= n)


def frozen_bn_eval(model):
    """BatchNorm layers whose parameters are all frozen go to eval mode (fastai's BnFreeze)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def all_bn_eval(model):
    """Every BatchNorm layer in eval mode, trainable or not: statistics stay ImageNet's (notebook 04)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def geometric_lrs(lo, hi, n):
    """n learning rates from lo to hi, evenly spaced on a log scale (fastai's even_mults)."""
    if n == 1:
        return [hi]
    step = (hi / lo) ** (1 / (n - 1))
    return [lo * step**i for i in range(n)]


def resnet_groups(model):
    """torchvision ResNet in 6 groups: stem (conv1, bn1), layer1-4, fc."""
    return [nn.ModuleList([model.conv1, model.bn1]), model.layer1, model.layer2, model.layer3, model.layer4, model.fc]


def resnet_body_head(model):
    """(body: images -> pooled (N, 512) features, head: model.fc), sharing the model's modules."""
    body = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2,
                         model.layer3, model.layer4, model.avgpool, nn.Flatten())
    return body, model.fc


ARCHS = {
    # name: (constructor(num_classes), groups, body_head, mean, std)
    "lite0": (efficientnet_lite0, lite0_groups, lite0_body_head, LITE0_MEAN, LITE0_STD),
    "resnet34": (resnet34, resnet_groups, resnet_body_head, IMAGENET_MEAN, IMAGENET_STD),
}


@dataclass
class Setup:
    """What every strategy shares: data loaders, device, the number of classes, and where the photos came from
    (root, per_class and seed of the subset, training size in px) to load them again at another size."""

    train: torch.utils.data.DataLoader
    test: torch.utils.data.DataLoader
    train_aug_ds: object
    train_plain_ds: object
    test_ds: object
    classes: int
    device: torch.device
    batch: int
    arch: str = "lite0"
    root: object = None
    per_class: int = None
    seed: int = 0
    size: int = 224


def _photos(split, transform, root, per_class, seed):
    """One split of the photos under ``root``, at most ``per_class`` of each breed (chosen with ``seed``)."""
    dataset = load_pets(split, transform, root=root)
    return dataset if per_class is None else small_subset(dataset, per_class, seed)


def make_setup(root, size=224, batch=32, device="cpu", per_class=None, seed=0, arch="lite0"):
    """Loaders over the pet photos under ``root`` (a folder holding ``oxford-iiit-pet/``; None: the course's
    configured folder, downloading the data set there if it is missing and the network allows)."""
    mean, std = ARCHS[arch][3:]
    train_ds = _photos("trainval", train_transform(size, mean, std), root, per_class, seed)
    plain_ds = _photos("trainval", eval_transform(size, mean, std), root, per_class, seed)
    test_ds = _photos("test", eval_transform(size, mean, std), root, per_class, seed)
    classes = len(load_pets("test", root=root).classes)
    return Setup(make_loader(train_ds, batch, True, device, seed=seed), make_loader(test_ds, 64, False, device),
                 train_ds, plain_ds, test_ds, classes, torch.device(device), batch, arch, root, per_class, seed, size)


def photos_at(setup, size):
    """The setup's test photos, evaluated at ``size`` px (resized to ``size * 8 / 7``, central crop): the same
    field of view as at the training size, in more pixels."""
    mean, std = ARCHS[setup.arch][3:]
    return _photos("test", eval_transform(size, mean, std), setup.root, setup.per_class, setup.seed)


def _model(setup, seed):
    make, groups, *_ = ARCHS[setup.arch]
    seed_everything(seed)
    model = make(num_classes=setup.classes).to(setup.device)
    return model, groups(model)


def _fit(model, setup, layer_lrs, epochs, history, bn=frozen_bn_eval, **kw):
    return fit_one_cycle(model, layer_lrs, setup.train, epochs, setup.test, setup.device,
                         before_epoch=bn, history=history, progress=False, **kw)


def trained_head_only(setup, epochs, seed, lr=3e-3):
    """(a) with the trained model: ``(model, history)``."""
    model, groups = _model(setup, seed)
    set_frozen_prefix(groups, len(groups) - 1)
    return model, _fit(model, setup, [(groups[-1], lr)], epochs, History("head only"))


def head_only(setup, epochs, seed, lr=3e-3):
    """(a) Freeze the whole backbone, train the new classifier."""
    return trained_head_only(setup, epochs, seed, lr)[1]


def full_fine_tuning(setup, epochs, seed, lr=1e-3):
    """(b) Everything trainable from the first step, one learning rate for all."""
    model, groups = _model(setup, seed)
    return _fit(model, setup, [(g, lr) for g in groups], epochs, History("full fine-tuning"))


def fastai_fine_tune(setup, epochs, seed, base_lr=2e-3, freeze_epochs=1, lr_mult=100, bn=frozen_bn_eval,
                     label="fine_tune"):
    """(c) fastai's ``fine_tune``: frozen epochs, then everything with lrs from base_lr/2/lr_mult to base_lr/2."""
    model, groups = _model(setup, seed)
    set_frozen_prefix(groups, len(groups) - 1)
    history = _fit(model, setup, [(groups[-1], base_lr)], freeze_epochs, History(label), bn, pct_start=0.99)
    set_frozen_prefix(groups, 0)
    lrs = geometric_lrs(base_lr / 2 / lr_mult, base_lr / 2, len(groups))
    return _fit(model, setup, list(zip(groups, lrs)), epochs - freeze_epochs, history, bn, pct_start=0.3, div=5.0)


def fine_tune_bn_eval(setup, epochs, seed):
    """(f) (c) with every BatchNorm layer's statistics kept in eval mode, the unfrozen ones too."""
    return fastai_fine_tune(setup, epochs, seed, bn=all_bn_eval, label="fine_tune, BN eval")


def gradual_unfreezing(setup, epochs, seed, lr=3e-3, factor=2.6):
    """(d) ULMFiT: one more group each epoch, group i's lr = lr / factor ** (distance from the top)."""
    model, groups = _model(setup, seed)
    history = History("gradual unfreezing")
    n = len(groups)
    for epoch in range(epochs):
        frozen = max(0, n - 1 - epoch)
        set_frozen_prefix(groups, frozen)
        layer_lrs = [(groups[i], lr / factor ** (n - 1 - i)) for i in range(frozen, n)]
        history = _fit(model, setup, layer_lrs, 1, history)
    return history


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
    """Pooled backbone features (N, 1280) on the CPU and labels (N,), dataset order.

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


class Flipped(torch.utils.data.Dataset):
    """The images of a dataset mirrored left to right (test-time augmentation)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i]
        return torch.flip(x, dims=[-1]), y


def cached_features(setup, epochs, seed, views=5, lr=3e-3, tta=False, test_size=None):
    """(e) Backbone run once: features of ``views`` augmented copies of each photo (the first without
    augmentation), then the classifier trained on them alone; the feature pass counts in the wall time.
    With ``tta``, test photos are scored on the mean of their own and their mirror image's features (the
    head is linear, so that is the mean of the two predictions). With ``test_size``, test photos are seen
    at that many pixels instead of the training size."""
    import time

    model, groups = _model(setup, seed)
    body, head = ARCHS[setup.arch][2](model)
    start = time.perf_counter()
    body = FoldedBody(body)
    parts = [features_of(body, setup.train_plain_ds, setup.device)]
    parts += [features_of(body, setup.train_aug_ds, setup.device) for _ in range(views - 1)]
    feats, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    test_ds = setup.test_ds if test_size is None else photos_at(setup, test_size)
    test_feats, test_labels = features_of(body, test_ds, setup.device)
    if tta:
        test_feats = (test_feats + features_of(body, Flipped(test_ds), setup.device)[0]) / 2
    test = torch.utils.data.TensorDataset(test_feats, test_labels)
    cache_s = time.perf_counter() - start
    train = make_loader(torch.utils.data.TensorDataset(feats, labels), 64, True, "cpu", seed=seed)
    history = fit_one_cycle(head.cpu(), [(head, lr)], train, epochs, make_loader(test, 256, False, "cpu"),
                            "cpu", history=History(f"cached features x{views}" + (" +TTA" if tta else "")
                                                   + (f", test {test_size}px" if test_size else "")),
                            progress=False)
    for row in history.epochs:
        row["seconds"] += cache_s
    return history


STRATEGIES = {
    "a": head_only,
    "b": full_fine_tuning,
    "c": fastai_fine_tune,
    "d": gradual_unfreezing,
    "e": cached_features,
    "f": fine_tune_bn_eval,
    "g": lambda setup, epochs, seed: cached_features(setup, epochs, seed, views=10, tta=True),
    "h": lambda setup, epochs, seed: cached_features(setup, epochs, seed, views=10),
    # (i) = (h) with test photos at 8/7 of the training size (FixRes: random crops make training objects
    # look larger than a central crop's at the same size, so the test size should grow with them)
    "i": lambda setup, epochs, seed: cached_features(setup, epochs, seed, views=10,
                                                     test_size=round(setup.size * 8 / 7)),
}
HEAD_EPOCHS = "eghi"  # the strategies above that train a head on cached features: their epochs are head epochs
