"""Benchmark 1: train-step time and peak memory of EfficientNet-Lite0 against the number of frozen groups.

    python -m benchmarks.freeze_cost                 # 224 px, batch 32, on the CPU
    python -m benchmarks.freeze_cost --device cuda   # on a GPU (adds CUDA peak memory)

A training step is forward, cross-entropy, backward and an AdamW step over the trainable parameters.
Each configuration runs in its own Python process, so that its peak resident memory (RSS) is its own.
Two ways to freeze k groups are measured:

- ``train-mode BN``: ``requires_grad_(False)`` on the first k groups, ``model.train()`` as every loop does:
  frozen BatchNorm layers still compute batch statistics (and update their running statistics);
- ``course``: the same, plus frozen BatchNorm layers put back in eval mode (notebook 04), as
  ``course.fit.fit_one_cycle(before_epoch=...)`` does in notebook 05;

and, when the whole body is frozen (k = 9), ``folded``: the body replaced by a copy with its BatchNorm layers
and its TensorFlow "same" padding folded into its convolutions (``course.fold``), which computes the same
features. The limit the issue set, ``no_grad forward``, is the same batch through the unchanged model in eval
mode under ``torch.no_grad()``.

Every configuration is measured in both memory formats, NCHW (PyTorch's default) and channels-last (NHWC,
which oneDNN's CPU convolutions prefer); ratios compare configurations in the same format, all in this run.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


MODES = ("train-mode BN", "course", "folded")
FORMATS = {"NCHW": torch.contiguous_format, "channels-last": torch.channels_last}


def measure_one(frozen, mode, size, batch, repeats, device, layout="NCHW"):
    """Median seconds of one step (or of one no_grad forward for mode "no_grad") and peak memory growth."""
    from benchmarks.reference import tools
    from course.fold import fold_batchnorm
    from course.pretrained import efficientnet_lite0, lite0_body_head, lite0_groups

    freeze_to, bn_freeze = tools().freeze_to, tools().bn_freeze

    device = torch.device(device)
    torch.manual_seed(0)
    model = efficientnet_lite0(num_classes=37).to(device)
    groups = lite0_groups(model)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 37, (batch,), device=device)
    if mode == "folded":
        if frozen != len(groups) - 1:
            raise ValueError(f"folded needs the whole body frozen ({len(groups) - 1} groups), not {frozen}")
        freeze_to(groups, frozen)
        body, head = lite0_body_head(model)
        model = nn.Sequential(fold_batchnorm(body, x[:2]), head)
    model.to(memory_format=FORMATS[layout])
    x = x.contiguous(memory_format=FORMATS[layout])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda_before = torch.cuda.memory_allocated(device)
    if mode == "no_grad":
        model.eval()

        def step():
            with torch.no_grad():
                model(x)
    else:
        freeze_to(groups, frozen)
        model.train()
        if mode == "course":
            bn_freeze(model)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

    times = []
    for i in range(repeats + 1):  # the first run warms up (allocations, AdamW state) and is not counted
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    out = {"frozen": frozen, "mode": mode, "layout": layout, "step_s": _median(times),
           "rss_growth_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before}
    if device.type == "cuda":
        out["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device) - cuda_before
    return out


def run_in_process(frozen, mode, layout, args):
    cmd = [sys.executable, "-m", "benchmarks.freeze_cost", "--one", str(frozen), mode, layout,
           "--size", str(args.size), "--batch", str(args.batch), "--repeats", str(args.repeats),
           "--device", args.device]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=os.environ)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frozen", type=int, nargs="+", default=[3, 6, 8, 9],
                    help="numbers of frozen groups to measure (of 10; 9 = everything but the classifier)")
    ap.add_argument("--layouts", nargs="+", choices=sorted(FORMATS), default=list(FORMATS),
                    help="memory formats to measure (default: both)")
    ap.add_argument("--one", nargs=3, metavar=("FROZEN", "MODE", "LAYOUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        frozen, mode, layout = args.one
        print(json.dumps(measure_one(int(frozen), mode, args.size, args.batch, args.repeats, args.device,
                                     layout)))
        return None
    print(f"EfficientNet-Lite0, batch {args.batch} at {args.size}px on {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} steps",
          flush=True)
    body_frozen = 9
    rows, limits = [], {}
    for layout in args.layouts:
        limits[layout] = run_in_process(body_frozen, "no_grad", layout, args)
        rows.append(run_in_process(0, "course", layout, args))  # full fine-tuning: nothing frozen, one mode
        for k in sorted(set(args.frozen) - {0}):
            rows += [run_in_process(k, mode, layout, args) for mode in MODES
                     if mode != "folded" or k == body_frozen]
    full = {r["layout"]: r for r in rows if r["frozen"] == 0}
    mib = 2**20
    print(f"\n{'layout':13s} {'frozen':>6s} {'mode':14s} {'step ms':>8s} {'full/this':>9s} "
          f"{'this/no_grad':>12s} {'RSS growth MiB':>15s}"
          + (" CUDA peak MiB" if "cuda_peak_bytes" in rows[0] else ""))
    for r in rows + list(limits.values()):
        lay = r["layout"]
        line = (f"{lay:13s} {r['frozen'] if r['mode'] != 'no_grad' else '-':>6} {r['mode']:14s} "
                f"{1e3 * r['step_s']:8.1f} {full[lay]['step_s'] / r['step_s']:9.2f} "
                f"{r['step_s'] / limits[lay]['step_s']:12.2f} {r['rss_growth_bytes'] / mib:15.0f}")
        if "cuda_peak_bytes" in r:
            line += f" {r['cuda_peak_bytes'] / mib:13.0f}"
        print(line)
    most = max(args.frozen)
    for r in (r for r in rows if r["frozen"] == most):
        lay = r["layout"]
        print(f"\n{lay}, {most} groups frozen, {r['mode']}: "
              f"{full[lay]['step_s'] / r['step_s']:.2f}x faster than full fine-tuning in {lay} "
              f"(target >= 5), "
              f"{r['step_s'] / limits[lay]['step_s']:.2f}x its no_grad forward (target <= 1.1)")
    best_full = min(full.values(), key=lambda r: r["step_s"])
    best_frozen = min((r for r in rows if r["frozen"] == most), key=lambda r: r["step_s"])
    print(f"\nfastest full fine-tuning ({best_full['layout']}) / fastest step with {most} groups frozen "
          f"({best_frozen['mode']}, {best_frozen['layout']}): "
          f"{best_full['step_s'] / best_frozen['step_s']:.2f}x (target >= 5)")
    return rows, limits


if __name__ == "__main__":
    main()
