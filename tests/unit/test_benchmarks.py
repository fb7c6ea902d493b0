"""The benchmarks in benchmarks/ run end to end at a tiny size, so that they keep working.

These check what the benchmarks compute and print, never how fast anything is: the figures come from
running the benchmarks themselves at full size (see each one's docstring).
"""
import pytest

from benchmarks import accuracy, cached_epoch, freeze_cost, grading

pytestmark = pytest.mark.slow


def test_accuracy_benchmark_runs_every_strategy_and_writes_its_results_file(shared_data, tmp_path, capsys):
    """Rates from range tests, every strategy at the same steps, validation curves, the test split scored once
    per finished run, and a results file that course.strategies reads back into the same table."""
    from course.strategies import STRATEGIES, format_table, load_results, summary

    out = tmp_path / "results.json"
    records, curves = accuracy.main(["--data", str(shared_data / "pets-3breeds"), "--seeds", "0", "1",
                                     "--per-class", "5", "--size", "32", "--batch", "4", "--epochs", "2",
                                     "--finder-steps", "8", "--out", str(out)])
    assert [(r["seed"], r["key"]) for r in records] == [(s, k) for s in (0, 1) for k in STRATEGIES]
    assert sorted(curves) == ["frozen", "scratch", "unfrozen"]
    for r in records:
        assert len(r["epochs"]) == 2 and r["steps"] == records[0]["steps"], \
            "the same budget for every strategy"
        assert r["lr"] == curves[STRATEGIES[r["key"]].rate_from].suggestion
        assert all(0 <= row["accuracy"] <= 1 for row in r["epochs"]) and 0 <= r["test_acc"] <= 1
    saved = load_results(out)
    assert saved["setting"]["photos"] == {"train": 12, "valid": 3, "test": 15}, "5 a breed: 4 train, 1 valid"
    assert saved["setting"]["seeds"] == [0, 1] and saved["machine"]["device"] and saved["setting"]["commit"]
    assert saved["records"] == records
    table = format_table(summary(saved["records"]))
    assert table in capsys.readouterr().out


def test_freeze_cost_benchmark_measures_each_configuration(capsys):
    """One memory format (channels-last; NCHW is the same code with the default format): a process per row."""
    rows, limits = freeze_cost.main(["--size", "32", "--batch", "4", "--repeats", "1", "--frozen", "9",
                                     "--layouts", "channels-last"])
    per_layout = [(0, "course"), (9, "train-mode BN"), (9, "course"), (9, "folded")]
    assert [(r["layout"], r["frozen"], r["mode"]) for r in rows] == [
        ("channels-last", k, mode) for k, mode in per_layout]
    assert sorted(limits) == ["channels-last"] and all(r["mode"] == "no_grad" for r in limits.values())
    assert all(r["step_s"] > 0 and r["rss_growth_bytes"] >= 0 for r in rows)
    out = capsys.readouterr().out
    assert out.count("x faster than full fine-tuning in") == 3 and "no_grad forward (target <= 1.1)" in out
    assert "fastest full fine-tuning" in out


def test_cached_epoch_benchmark_compares_the_two_epochs(shared_data, capsys):
    full, cached, cache_s = cached_epoch.main(["--data", str(shared_data / "pets-3breeds"), "--size", "32",
                                               "--repeats", "1", "--cached-repeats", "2"])
    assert full > 0 and cached > 0 and cache_s > 0
    assert "ratio:" in capsys.readouterr().out


def test_grading_benchmark_times_both_graders(capsys):
    figures = grading.main(["--class-size", "2", "--repeats", "1"])
    assert set(figures) == {"one", "class"} and all(t > 0 for pair in figures.values() for t in pair)
    out = capsys.readouterr().out
    assert "sandboxed grader" in out and "x the throughput (target >= 1.8x)" in out


def test_the_gpu_check_measures_throughput_and_writes_its_results_files(shared_data, tmp_path, capsys):
    """On the CPU at a tiny size, the throughput part (the accuracy part is the benchmark tested above, the
    notebook part notebook 05 itself, run by the autograding tests)."""
    from benchmarks import gpu_check

    figures = gpu_check.main(["--data", str(shared_data / "pets-3breeds"), "--out", str(tmp_path),
                              "--device", "cpu", "--size", "32", "--batch", "4", "--seconds", "0.1",
                              "--parts", "throughput"])
    rates = figures["throughput"]
    assert all(rates[f"{k}_{w}"] > 0 for k in ("frozen", "unfrozen") for w in ("loader", "compute"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["throughput.json"]
    assert "images/s through the loader" in capsys.readouterr().out
    import torch

    if not torch.cuda.is_available():   # as on CI: the check refuses rather than measure a CPU as a GPU
        with pytest.raises(SystemExit):
            gpu_check.main(["--data", str(shared_data), "--out", str(tmp_path)])
        assert "no CUDA GPU" in capsys.readouterr().err
