"""The benchmarks in tests/benchmarks/ run end to end at a tiny size, so that they keep working.

These check what the benchmarks compute and print, never how fast anything is: the figures come from
running the benchmarks themselves at full size (see each one's docstring).
"""
import pytest

from tests.benchmarks import accuracy, cached_epoch, freeze_cost, grading, hard_photos

pytestmark = pytest.mark.slow


def test_accuracy_benchmark_runs_every_strategy(shared_data, capsys):
    runs = accuracy.main(["--data", str(shared_data / "pets-3breeds"), "--seeds", "0", "1", "--per-class", "2",
                          "--size", "32", "--batch", "4", "--epochs", "2", "--head-epochs", "2"])
    assert sorted(runs) == list("abcdefghi")
    for key, histories in runs.items():
        assert len(histories) == 2, "one history per seed"
        for h in histories:
            assert len(h.epochs) == 2 and all(0 <= r["accuracy"] <= 1 for r in h.epochs)
    assert len(runs["c"][0].groups) == 2 and len(runs["d"][0].groups) == 2, "two phases each"
    assert runs["d"][0].groups[0][-1]["layer"] == 0 and len({g["layer"] for g in runs["d"][0].groups[1]}) == 2
    out = capsys.readouterr().out
    assert "mean" in out and "(f) fine_tune, BN eval" in out and "(i) cached features x10, test 37px" in out


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


def test_hard_photos_lists_the_photos_every_classifier_gets_wrong(shared_data, capsys):
    wrong, always = hard_photos.main(["--data", str(shared_data / "pets-3breeds"), "--seeds", "0", "1",
                                      "--per-class", "3", "--size", "32", "--batch", "4", "--epochs", "1"])
    assert list(wrong) == ["(a) head only, seed 0", "(a) head only, seed 1", "nearest class mean"]
    assert all(mask.shape == (9,) for mask in wrong.values())  # 3 test photos of each of 3 breeds
    assert always == [i for i in range(9) if all(mask[i] for mask in wrong.values())]
    out = capsys.readouterr().out
    assert f"wrong in every one of the 3: {len(always)}" in out and out.count(".jpg") == len(always)


def test_grading_benchmark_times_both_graders(capsys):
    figures = grading.main(["--class-size", "2", "--repeats", "1"])
    assert set(figures) == {"one", "class"} and all(t > 0 for pair in figures.values() for t in pair)
    out = capsys.readouterr().out
    assert "sandboxed grader" in out and "x the throughput (target >= 1.8x)" in out
