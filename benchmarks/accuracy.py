"""Benchmark 3 (and 4 on a GPU): notebook 05's comparison of strategies, as a scientist runs it, writing
the results file the notebook prints its tables from.

    python -m benchmarks.accuracy --data ../shared/data/pets-sample --seeds 0 1 2 \\
        --out course/results/pets-sample_224px_cpu.json

The trainval photos are split into training and validation (``course.data.train_valid_split``, the same
split for every strategy and seed); a learning-rate range test on the training photos picks each strategy's
rate (``course.strategies.find_rates``); every strategy of ``course.strategies`` then trains for the same
epochs from each seed, is evaluated on validation after every epoch, and scores the test photos once at the
end. Prints each run, then the mean and min-max over seeds; ``--out`` writes everything (setting, machine,
rates, every epoch of every run) as JSON.
"""
import argparse
import subprocess
import time
from pathlib import Path

import torch

from benchmarks.pets import make_setup
from benchmarks.reference import tools
from course.device import default_device
from course.lr_find import SUGGESTION_RULE
from course.strategies import (
    STRATEGIES,
    Data,
    find_rates,
    format_table,
    rates_record,
    run,
    save_results,
    summary,
)


def commit():
    """The repository's commit (with "+changes" when the code a result depends on, course/ and tests/,
    differs from it), or "unknown"."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "course",
                                "benchmarks"], cwd=here, capture_output=True, text=True,
                               check=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None, description=__doc__, defaults=None):
    ap = argparse.ArgumentParser(description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None,
                    help="folder holding oxford-iiit-pet/ "
                         "(default: $COURSE_DATA, downloading there if missing)")
    ap.add_argument("--arch", default="lite0", choices=["lite0", "resnet34"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", default="".join(STRATEGIES), help="keys of course.strategies.STRATEGIES")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--per-class", type=int, default=None, help="at most this many photos of each breed")
    ap.add_argument("--valid-fraction", type=float, default=0.2)
    ap.add_argument("--finder-steps", type=int, default=60, help="steps of each learning-rate range test")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="write the results file here (JSON)")
    ap.set_defaults(**(defaults or {}))
    args = ap.parse_args(argv)
    unknown = set(args.strategies) - set(STRATEGIES)
    if unknown:
        ap.error(f"unknown strategies {''.join(sorted(unknown))}; known: {''.join(STRATEGIES)}")
    device = torch.device(args.device) if args.device else default_device()
    code = commit()   # before training: the code that runs
    setup = make_setup(args.data, args.size, args.batch, device, args.per_class, 0, args.arch,
                       args.valid_fraction)
    print(f"{args.arch}, data {args.data or '$COURSE_DATA'}: {len(setup.train)} training, {len(setup.valid)} "
          f"validation, {len(setup.test)} test photos, {setup.classes} breeds; {args.size}px, "
          f"batch {args.batch}, {args.epochs} epochs, device {device}, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    kit = tools()
    start = time.perf_counter()
    data = Data(setup.train_loader, setup.valid_loader, device, args.finder_steps)
    curves = find_rates(setup.new_model, data, kit,
                        progress=lambda name: print(f"range test: {name}", flush=True))
    rates = {name: c.suggestion for name, c in curves.items()}
    print("suggested rates (" + SUGGESTION_RULE + "): " + ", ".join(f"{k} {v:.2e}" for k, v in rates.items())
          + f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    records = []
    # one split for all; run() reseeds the training loader's shuffling with each seed
    for seed in args.seeds:
        for key in args.strategies:
            strategy = STRATEGIES[key]
            _, record = run(strategy, setup.new_model, data, kit, seed, args.epochs,
                            rates[strategy.rate_from], setup.test_loader)
            records.append(record)
            print(f"seed {seed} {record['label']:24s} lr {record['lr']:.1e}  "
                  f"validation {100 * record['valid_acc']:5.1f}%"
                  f"  train {100 * record['train_acc']:5.1f}%  {record['seconds']:6.1f} s  "
                  f"test {100 * record['test_acc']:5.1f}%", flush=True)
    print()
    print(format_table(summary(records)))
    if args.out:
        setting = {"data": str(args.data or "$COURSE_DATA"), "arch": args.arch, "size": args.size,
                   "batch": args.batch, "epochs": args.epochs, "seeds": args.seeds,
                   "per_class": args.per_class,
                   "valid_fraction": args.valid_fraction, "photos": {"train": len(setup.train),
                   "valid": len(setup.valid), "test": len(setup.test)}, "classes": setup.classes,
                   "finder_steps": args.finder_steps, "commit": code,
                   "command": "python -m benchmarks.accuracy " + " ".join(argv if argv is not None else
                                                                             __import__("sys").argv[1:])}
        rate_info = rates_record(curves)
        save_results(args.out, records, rate_info, setting)
        print(f"results written to {args.out}")
    return records, curves


if __name__ == "__main__":
    main()
