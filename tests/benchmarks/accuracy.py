"""Benchmark 3 (and 4 on a GPU): test accuracy of strategies (a)-(i) with EfficientNet-Lite0 on real photos.

    python -m tests.benchmarks.accuracy --data ../shared/data/pets-sample --seeds 0 1 2

Prints, per strategy, the accuracy after the last epoch for each seed, their mean and spread (min-max),
and the training wall time; ``--json`` saves every epoch of every run for plotting.
"""
import argparse
import json
import statistics
import time

import torch

from course.device import default_device
from tests.benchmarks.recipes import HEAD_EPOCHS, STRATEGIES, make_setup


def main(argv=None, description=__doc__, defaults=None):
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None,
                    help="folder holding oxford-iiit-pet/ (default: $COURSE_DATA, downloading there if missing)")
    ap.add_argument("--arch", default="lite0", choices=["lite0", "resnet34"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", default="abcdefghi")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--head-epochs", type=int, default=30,
                    help=f"epochs of strategies {', '.join(HEAD_EPOCHS)} over the cached features")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--per-class", type=int, default=None, help="subset of the photos (tests)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", default=None, help="write every run's history here")
    ap.set_defaults(**(defaults or {}))
    args = ap.parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    print(f"{args.arch}, data {args.data or '$COURSE_DATA'}, {args.size}px, batch {args.batch}, {args.epochs} epochs, device {device}, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    runs = {}
    for seed in args.seeds:
        setup = make_setup(args.data, args.size, args.batch, device, args.per_class, seed, args.arch)
        for key in args.strategies:
            start = time.perf_counter()
            epochs = args.head_epochs if key in HEAD_EPOCHS else args.epochs
            history = STRATEGIES[key](setup, epochs, seed)
            runs.setdefault(key, []).append(history)
            last = history.epochs[-1]
            print(f"seed {seed} ({key}) {history.label:22s} test acc {100 * last['accuracy']:5.1f}%  "
                  f"train acc {100 * last['train_acc']:5.1f}%  train {last['seconds']:6.1f} s  "
                  f"(with evaluation {time.perf_counter() - start:6.1f} s)", flush=True)
    print(f"\n{'strategy':28s} {'mean':>6s} {'min':>6s} {'max':>6s} {'stdev':>6s} {'error %':>7s}  train s  per seed")
    for key, histories in runs.items():
        accs = [100 * h.epochs[-1]["accuracy"] for h in histories]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        secs = statistics.mean(h.epochs[-1]["seconds"] for h in histories)
        print(f"({key}) {histories[0].label:24s} {statistics.mean(accs):6.1f} {min(accs):6.1f} {max(accs):6.1f} "
              f"{sd:6.2f} {100 - statistics.mean(accs):7.1f}  {secs:7.1f}  " + " ".join(f"{a:.1f}" for a in accs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: [h.as_dict() for h in v] for k, v in runs.items()}, f)
    return runs


if __name__ == "__main__":
    main()
