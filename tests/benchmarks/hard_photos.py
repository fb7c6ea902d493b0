"""Which test photos does every frozen-backbone classifier get wrong? The errors no recipe will fix.

    python -m tests.benchmarks.hard_photos --data ../shared/data/pets-3breeds --seeds 0 1 2

Trains strategy (a), the classifier on the frozen EfficientNet-Lite0, once per seed, and builds a
nearest-class-mean classifier on the same frozen features (each breed's mean feature vector over its
training photos; no training, no seed). Prints each one's wrong test photos, then those that every one of
them gets wrong, with their breed and the breed they were taken for.
"""
import argparse

import torch

from course.device import default_device
from tests.benchmarks.recipes import ARCHS, FoldedBody, _model, features_of, make_setup, trained_head_only


@torch.no_grad()
def predicted(model, loader, device):
    """(predicted labels (N,), true labels (N,)) of ``model`` in eval mode over ``loader``, in its order."""
    model.eval()
    guesses, labels = [], []
    for x, y in loader:
        guesses.append(model(x.to(device)).argmax(dim=1).cpu())
        labels.append(y)
    return torch.cat(guesses), torch.cat(labels)


def nearest_class_mean(setup):
    """Predicted test labels (N,) of the nearest class mean on the frozen body's features, and the true ones."""
    model, _ = _model(setup, 0)
    body = FoldedBody(ARCHS[setup.arch][2](model)[0])
    train, train_labels = features_of(body, setup.train_plain_ds, setup.device)
    test, test_labels = features_of(body, setup.test_ds, setup.device)
    means = torch.stack([train[train_labels == c].mean(dim=0) for c in range(setup.classes)])  # (classes, D)
    return torch.cdist(test, means).argmin(dim=1), test_labels


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder holding oxford-iiit-pet/")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--per-class", type=int, default=None, help="subset of the photos (tests)")
    args = ap.parse_args(argv)
    device = default_device()
    wrong, first = {}, None
    for seed in args.seeds:  # a setup per seed, as the accuracy benchmark makes: its loader shuffles with the seed
        setup = make_setup(args.data, args.size, args.batch, device, args.per_class, seed)
        first = first or setup  # every classifier is scored on the same test photos (a subset depends on the seed)
        model, _ = trained_head_only(setup, args.epochs, seed)
        guess, truth = predicted(model, first.test, device)
        wrong[f"(a) head only, seed {seed}"] = guess != truth
    guess, truth = nearest_class_mean(first)
    wrong["nearest class mean"] = guess != truth
    for name, mask in wrong.items():
        print(f"{name:28s} {int(mask.sum()):4d} of {len(mask)} test photos wrong")
    always = torch.stack(list(wrong.values())).all(dim=0).nonzero().flatten().tolist()
    dataset, index = first.test_ds, range(len(first.test_ds))
    if isinstance(dataset, torch.utils.data.Subset):
        dataset, index = dataset.dataset, dataset.indices
    print(f"\nwrong in every one of the {len(wrong)}: {len(always)}")
    for i in always:
        j = index[i]
        breed, said = dataset.classes[dataset.labels[j]], dataset.classes[guess[i]]
        print(f"  {dataset.files[j].name:28s} a {breed}; the nearest class mean says {said}")
    return wrong, always


if __name__ == "__main__":
    main()
