"""The one-shot GPU check (``make gpu-check``): on one GPU, with no internet, in about 8 minutes, measure what
notebook 05 calls the real experiment and write every figure under one folder.

    python -m benchmarks.gpu_check --data ../shared/data/pets-sample --out build/gpu-check

Three parts, each writing its file under ``--out`` (and printing as it goes):

1. ``throughput.json``: images per second of EfficientNet-Lite0 at 224 px, batch 64, as ``course.fit`` trains
   (mixed precision by ``course.fit.amp_dtype``, channels-last): a frozen step (head only, frozen BatchNorm in
   eval) and an unfrozen step, each fed by the real loader (decoding JPEGs in workers), and the same model's
   pure compute rate on random tensors already on the GPU, which says how much the loader leaves idle.
2. ``accuracy.json``: ``benchmarks.accuracy`` at 224 px, three seeds, 5 epochs, batch 64: the results
   file of notebook 05's comparison (rates from range tests, validation for choices, the test split once).
3. ``05_unfreezing.ipynb``: notebook 05 (the instructor's version, solutions in) run end to end in full mode
   on the same data, with its outputs, and ``notebook.json`` with its wall time.

``--parts`` runs some of them. Without a GPU it refuses, unless ``--device cpu`` is given (for its own test).
"""
import argparse
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _images_per_second(step, images_per_step, seconds, device):
    """Run ``step()`` repeatedly for about ``seconds`` after two warm-up calls; images per second."""
    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * images_per_step / (time.perf_counter() - start)


def throughput(data, device, size, batch, seconds):
    """Images per second: frozen and unfrozen steps through the real loader, and pure compute; a dict."""
    from benchmarks.pets import make_setup
    from benchmarks.reference import tools
    from course.fit import _to_device, amp_dtype, grad_scaler, one_cycle_optimizer, train_step

    kit = tools()
    setup = make_setup(data, size, batch, device)
    amp = device.type == "cuda"
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "size": size,
           "batch": batch, "amp_dtype": str(amp_dtype(device)) if amp else "float32",
           "loader_workers": setup.train_loader.num_workers}
    for name, frozen in (("frozen", True), ("unfrozen", False)):
        model, groups = setup.new_model(0)
        kit.freeze_to(groups, len(groups) - 1 if frozen else 0)
        model.to(memory_format=torch.channels_last).train()
        kit.bn_freeze(model)
        optimizer, _ = one_cycle_optimizer(model, [(g, 1e-4) for g in groups])
        scaler = grad_scaler(device, amp)
        batches = iter(())

        def step(x, y):  # the course's one training step (course.fit.train_step)
            train_step(model, optimizer, x, y, scaler=scaler, amp=amp)

        def loader_step():
            nonlocal batches
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(setup.train_loader)
                x, y = next(batches)
            step(*_to_device(x, y, device, True))

        x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, setup.classes, (batch,), device=device)
        out[f"{name}_loader"] = _images_per_second(loader_step, batch, seconds, device)
        out[f"{name}_compute"] = _images_per_second(lambda: step(x, y), batch, seconds, device)
        print(f"{name:8s} step: {out[f'{name}_loader']:8.0f} images/s through the loader, "
              f"{out[f'{name}_compute']:8.0f} on tensors already on the {device.type}", flush=True)
    return out


def run_notebook(data, out_dir, timeout):
    """Notebook 05 with its solutions, full mode, executed into ``out_dir``; returns its wall time in
    seconds."""
    import nbformat
    from nbclient import NotebookClient

    path = ROOT / "source" / "05_unfreezing" / "05_unfreezing.ipynb"
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, COURSE_FAST="0", COURSE_DATA=str(Path(data).resolve()))
    env.pop("NBGRADER_EXECUTION", None)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}})
    try:
        client.execute(env=env)   # the kernel's environment (nbclient passes it to the kernel manager)
    finally:
        nbformat.write(nb, out_dir / "05_unfreezing.ipynb")
    return time.perf_counter() - start


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder holding oxford-iiit-pet/")
    ap.add_argument("--out", default="build/gpu-check", help="folder for the results (made if missing)")
    ap.add_argument("--parts", nargs="+", default=["throughput", "accuracy", "notebook"],
                    choices=["throughput", "accuracy", "notebook"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0, help="time each throughput measurement this long")
    ap.add_argument("--accuracy-args", default="--seeds 0 1 2 --epochs 5 --batch 64",
                    help="more options for benchmarks.accuracy")
    ap.add_argument("--notebook-timeout", type=int, default=300, help="seconds a notebook cell may take")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA GPU is visible to torch here; "
                 "this check is for a GPU machine (--device cpu to try it)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from course.strategies import machine

    figures = {"machine": machine(), "data": str(args.data), "parts": {}}
    start = time.perf_counter()
    if "throughput" in args.parts:
        t0 = time.perf_counter()
        figures["throughput"] = throughput(args.data, device, args.size, args.batch, args.seconds)
        (out / "throughput.json").write_text(json.dumps(figures["throughput"]
                                                        | {"machine": figures["machine"]}, indent=1) + "\n")
        figures["parts"]["throughput"] = time.perf_counter() - t0
    if "accuracy" in args.parts:
        from benchmarks import accuracy

        t0 = time.perf_counter()
        accuracy.main(["--data", str(args.data), "--size", str(args.size), "--device", str(device),
                       "--out", str(out / "accuracy.json"), *args.accuracy_args.split()])
        figures["parts"]["accuracy"] = time.perf_counter() - t0
    if "notebook" in args.parts:
        seconds = run_notebook(args.data, out, args.notebook_timeout)
        (out / "notebook.json").write_text(json.dumps({"seconds": seconds, "machine": figures["machine"]})
                                           + "\n")
        figures["parts"]["notebook"] = seconds
    total = time.perf_counter() - start
    print(f"\n{', '.join(f'{k} {v:.0f} s' for k, v in figures['parts'].items())}; total {total:.0f} s; "
          f"results in {out}/")
    return figures


if __name__ == "__main__":
    main()
