"""Benchmark 2: one head epoch over cached features against one epoch that runs the frozen backbone.

    python -m benchmarks.cached_epoch --data ../shared/data/pets-sample

Both train EfficientNet-Lite0's classifier alone, batch 32, with ``course.fit.fit_one_cycle``: once over
the photos (decoded, resized and run through the frozen backbone, BatchNorm in eval mode, every epoch),
once over features computed beforehand. Prints both epoch times, their ratio, what computing the cache
cost once, and after how many epochs the cache has paid for itself.
"""
import argparse
import time

import torch

from benchmarks.pets import features_of
from benchmarks.reference import tools
from course import seed_everything
from course.data import load_pets
from course.fit import fit_one_cycle
from course.loaders import eval_transform, make_loader
from course.pretrained import LITE0_MEAN, LITE0_STD, efficientnet_lite0, lite0_body_head, lite0_groups


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder holding oxford-iiit-pet/")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="epochs through the backbone timed (median)")
    ap.add_argument("--cached-repeats", type=int, default=50,
                    help="epochs over cached features timed (median, after one not timed): a few ms each, "
                         "so a few samples would measure the machine's noise")
    args = ap.parse_args(argv)
    seed_everything(0)
    dataset = load_pets("trainval", eval_transform(args.size, LITE0_MEAN, LITE0_STD), root=args.data)
    model = efficientnet_lite0(num_classes=len(dataset.classes))
    groups = lite0_groups(model)
    tools().freeze_to(groups, len(groups) - 1)
    body, head = lite0_body_head(model)
    photos = make_loader(dataset, args.batch, True, "cpu")

    full = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fit_one_cycle(model, [(head, 1e-3)], photos, 1, before_epoch=tools().bn_freeze, progress=False)
        full.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    feats, labels = features_of(body, dataset, "cpu")
    cache_s = time.perf_counter() - t0
    cached = make_loader(torch.utils.data.TensorDataset(feats, labels), args.batch, True, "cpu")
    fast = []
    for i in range(args.cached_repeats + 1):
        t0 = time.perf_counter()
        fit_one_cycle(head, [(head, 1e-3)], cached, 1, progress=False)
        if i:
            fast.append(time.perf_counter() - t0)

    f, c = _median(full), _median(fast)
    print(f"{len(dataset)} photos at {args.size}px, batch {args.batch}, CPU, "
          f"{torch.get_num_threads()} threads")
    print(f"epoch with the frozen backbone: {f:8.3f} s (median of {args.repeats})")
    print(f"epoch over cached features:     {1e3 * c:8.3f} ms (median of {args.cached_repeats})")
    print(f"ratio: {f / c:,.0f}x (target >= 1000)")
    print(f"computing the cache once: {cache_s:.2f} s; "
          f"it has paid for itself after {cache_s / (f - c):.2f} epochs")
    return f, c, cache_s


if __name__ == "__main__":
    main()
