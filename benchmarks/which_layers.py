"""Notebook 06's comparison of which layers to train, under distribution shift, as a scientist runs it,
writing the results file the notebook prints.

    python -m benchmarks.which_layers --data ../shared/data/pets-3breeds --size 128 --seeds 0 1 2 \\
        --out course/results/which_layers_pets-3breeds_128px_cpu.json

The trainval photos are split into training and validation (``course.data.train_valid_split``, one split
for every recipe and seed); the test photos are scored clean and corrupted (``course.shift``, every corruption
at ``--severity``, cached under ``--cache``). Range tests on the training photos pick each phase's rate
(``course.surgery.find_rates``); every recipe of ``course.surgery`` then trains from each seed, is
evaluated on validation after every epoch, and scores the test sets once at the end, with the feature
distortion of each.
The tools the recipes take are notebook 06's reference answers (``benchmarks.reference``). Prints each run,
then the mean and min-max over seeds; ``--out`` writes everything as JSON.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

from benchmarks.accuracy import commit
from benchmarks.reference import surgery_tools
from course import seed_everything
from course.data import load_pets, small_subset, train_valid_split
from course.device import default_device
from course.loaders import eval_transform, make_loader, train_transform
from course.lr_find import SUGGESTION_RULE
from course.pretrained import LITE0_MEAN, LITE0_STD, efficientnet_lite0, lite0_groups
from course.shift import CORRUPTIONS, ShiftedImages
from course.strategies import rates_record, save_results
from course.surgery import RECIPES, Data, find_rates, format_table, run_seed, summary

DEFAULT_CACHE = Path.home() / ".cache" / "freezing-course" / "shifted"


def photos(root, size, per_class, severity, cache, shifts):
    """(train, valid, {test set name: dataset}, classes): the same split and shifted copies as notebook 06."""
    trainval = load_pets("trainval", train_transform(size, LITE0_MEAN, LITE0_STD), root=root)
    plain = load_pets("trainval", eval_transform(size, LITE0_MEAN, LITE0_STD), root=root)
    classes = trainval.classes
    if per_class:
        trainval, plain = (small_subset(d, per_class) for d in (trainval, plain))
    train, _, _, valid = train_valid_split(trainval, plain, valid_fraction=0.2, seed=0)
    clean = load_pets("test", root=root)
    keep = list(small_subset(clean, per_class).indices if per_class else range(len(clean)))
    to_model = eval_transform(size, LITE0_MEAN, LITE0_STD)
    tests = {"clean": load_pets("test", to_model, root=root)}
    for kind in shifts:
        tests[kind] = ShiftedImages(clean, kind, severity, size=224, cache=cache, transform=to_model)
    return train, valid, {k: torch.utils.data.Subset(d, keep) for k, d in tests.items()}, classes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="folder holding oxford-iiit-pet/ (default: $COURSE_DATA)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--per-class", type=int, default=None, help="at most this many photos of each breed")
    ap.add_argument("--probe-epochs", type=int, default=2)
    ap.add_argument("--tune-epochs", type=int, default=3)
    ap.add_argument("--finder-steps", type=int, default=40, help="steps of each learning-rate range test")
    ap.add_argument("--severity", type=int, default=3, choices=range(1, 6))
    ap.add_argument("--shifts", nargs="+", default=list(CORRUPTIONS), choices=list(CORRUPTIONS))
    ap.add_argument("--cache", default=str(DEFAULT_CACHE),
                    help="folder for the corrupted photos ('' for none)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="write the results file here (JSON)")
    args = ap.parse_args(argv)
    if args.probe_epochs < 1 or args.tune_epochs < 1:
        ap.error("--probe-epochs and --tune-epochs must be at least 1")
    device = torch.device(args.device) if args.device else default_device()
    code = commit()
    train, valid, tests, classes = photos(args.data, args.size, args.per_class, args.severity,
                                          args.cache or None, args.shifts)
    print(f"data {args.data or '$COURSE_DATA'}: {len(train)} training, {len(valid)} validation, "
          f"{len(tests['clean'])} test photos (and {len(tests) - 1} shifted copies), {len(classes)} breeds; "
          f"{args.size}px, batch {args.batch}, {args.probe_epochs} + {args.tune_epochs} epochs, "
          f"device {device}, "
          f"torch threads {torch.get_num_threads()}", flush=True)

    def new_model(seed, pretrained=True):
        seed_everything(seed)
        model = efficientnet_lite0(num_classes=len(classes), pretrained=pretrained).to(device)
        return model, lite0_groups(model)

    tools = surgery_tools()
    data = Data(make_loader(train, args.batch, True, device), make_loader(valid, 64, False, device),
                {k: make_loader(d, 64, False, device) for k, d in tests.items()}, device, args.finder_steps,
                args.probe_epochs, args.tune_epochs)
    start = time.perf_counter()
    curves, scores = find_rates(new_model, data, tools, args.recipes,
                                progress=lambda name: print(f"range test: {name}", flush=True))
    rates = {name: c.suggestion for name, c in curves.items()}
    print("suggested rates (" + SUGGESTION_RULE + "): " + ", ".join(f"{k} {v:.2e}" for k, v in rates.items())
          + f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    print("relative gradient norms of the probed model: " + ", ".join(f"{s:.3g}" for s in scores), flush=True)
    records = []

    def report(run):
        r = run.record
        records.append(r)
        print(f"seed {r['seed']} {r['label']:34s} lr {r['lr']:.1e}  valid {100 * r['valid_acc']:5.1f}%  "
              f"clean {100 * r['test']['clean']:5.1f}%  shifted {100 * r['shifted_mean']:5.1f}%  "
              f"{r['seconds']:6.1f} s", flush=True)

    for seed in args.seeds:
        run_seed(new_model, data, tools, seed, args.recipes, rates, scores, on_run=report)
    print()
    print(format_table(summary(records)))
    if args.out:
        setting = {"data": str(args.data or "$COURSE_DATA"), "arch": "lite0", "size": args.size,
                   "batch": args.batch, "probe_epochs": args.probe_epochs, "tune_epochs": args.tune_epochs,
                   "seeds": args.seeds, "per_class": args.per_class, "valid_fraction": 0.2,
                   "photos": {"train": len(train), "valid": len(valid), "test": len(tests["clean"])},
                   "classes": len(classes), "severity": args.severity, "shifts": args.shifts,
                   "finder_steps": args.finder_steps, "relative_grad_norms": scores, "commit": code,
                   "seconds": time.perf_counter() - start,
                   "command": "python -m benchmarks.which_layers " + " ".join(
                       argv if argv is not None else sys.argv[1:])}
        rate_info = rates_record(curves)
        save_results(args.out, records, rate_info, setting)
        print(f"results written to {args.out}")
    return records, curves


if __name__ == "__main__":
    main()
