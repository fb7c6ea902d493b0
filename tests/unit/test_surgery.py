"""course.surgery: notebook 06's recipes, run with notebook 06's reference answers on a few real photos.

What each recipe trains is checked on the trained models themselves: a linear probe leaves the body (weights
and BatchNorm statistics) as it was, so its features do not move; a surgical run changes its own group and
nothing else after the shared probe; Auto-RGN's rates follow the relative gradient norms.
"""
import pytest
import torch

from benchmarks.reference import surgery_tools
from benchmarks.which_layers import main as benchmark
from benchmarks.which_layers import photos
from course import seed_everything
from course.loaders import make_loader
from course.pretrained import efficientnet_lite0, lite0_groups
from course.strategies import load_results
from course.surgery import RECIPES, Data, find_rates, format_table, rgn_multipliers, run_seed, summary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setting(shared_data, tmp_path_factory):
    train, valid, tests, classes = photos(shared_data / "pets-3breeds", 32, 4, 3,
                                          tmp_path_factory.mktemp("shifted"), ["gaussian_noise", "contrast"])

    def new_model(seed, pretrained=True):
        seed_everything(seed)
        model = efficientnet_lite0(num_classes=len(classes), pretrained=pretrained)
        return model, lite0_groups(model)

    data = Data(make_loader(train, 4, True, "cpu"), make_loader(valid, 8, False, "cpu"),
                {k: make_loader(d, 8, False, "cpu") for k, d in tests.items()}, torch.device("cpu"), sweep=5,
                probe_epochs=1, tune_epochs=1)
    tools = surgery_tools()
    curves, scores = find_rates(new_model, data, tools, list(RECIPES))
    rates = {name: c.suggestion for name, c in curves.items()}
    runs = run_seed(new_model, data, tools, 0, list(RECIPES), rates, scores)
    runs = {run.record["key"]: run for run in runs}
    return new_model, data, curves, scores, rates, runs


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_every_recipe_is_scored_clean_and_shifted_with_its_own_rate(setting):
    _, _, curves, scores, rates, runs = setting
    assert sorted(curves) == sorted(["head", "all", "probed all", "probed rgn"]
                                    + [f"probed g{k}" for k in (0, 4, 8)])
    assert len(scores) == 10 and all(s > 0 for s in scores)
    for key, run in runs.items():
        r = run.record
        assert r["lr"] == rates[RECIPES[key].rate]
        assert sorted(r["test"]) == ["clean", "contrast", "gaussian_noise"]
        assert all(0 <= a <= 1 for a in r["test"].values()) and 0 <= r["valid_acc"] <= 1
        assert len(r["epochs"]) == 2, "the same budget of epochs for every recipe"
    table = format_table(summary([run.record for run in runs.values()]))
    assert all(RECIPES[k].label in table for k in runs)


def test_a_linear_probe_leaves_the_body_and_its_features_as_they_were(setting):
    new_model, _, _, _, _, runs = setting
    pretrained, groups = new_model(0)
    trained = lite0_groups(runs["lp"].model)
    for g_before, g_after in zip(groups[:-1], trained[:-1]):
        assert all(torch.equal(a, b) for a, b in zip(_state(g_before).values(), _state(g_after).values())), \
            "weights and BatchNorm statistics of the body unchanged"
    assert all(d == 0.0 for d in runs["lp"].record["distortion"].values())
    assert all(d > 0 for d in runs["ft"].record["distortion"].values()), "full fine-tuning moves the features"
    assert all(d > 0 for d in runs["lpft"].record["distortion"].values())


@pytest.mark.parametrize("k", [0, 4, 8])
def test_a_surgical_run_changes_its_group_alone_after_the_shared_probe(setting, k):
    new_model, _, _, _, _, runs = setting
    pretrained, groups = new_model(0)
    trained = lite0_groups(runs[f"g{k}"].model)
    other_head = lite0_groups(runs["g0" if k else "g4"].model)[-1]
    for i, (g_before, g_after) in enumerate(zip(groups, trained)):
        same = all(torch.equal(a, b) for a, b in zip(_state(g_before).values(), _state(g_after).values()))
        if i == k or i == len(groups) - 1:
            assert not same, f"group {i} should have trained"
        else:
            assert same, f"group {i} changed in surgical run g{k} (weights or BatchNorm statistics)"
    assert all(torch.equal(a, b) for a, b in zip(trained[-1].parameters(), other_head.parameters())), \
        "the head comes from the one probe of the seed and is frozen after it"


def test_auto_rgn_rates_follow_the_scores():
    assert rgn_multipliers([0.5, 2.0, 1.0]) == [0.25, 1.0, 0.5]


def test_the_benchmark_writes_the_results_file_the_notebook_reads(shared_data, tmp_path, capsys):
    out = tmp_path / "results.json"
    records, curves = benchmark(["--data", str(shared_data / "pets-3breeds"), "--seeds", "0",
                                 "--per-class", "3",
                                 "--size", "32", "--batch", "4", "--probe-epochs", "1", "--tune-epochs", "1",
                                 "--finder-steps", "4", "--shifts", "jpeg", "--recipes", "lp", "lpft", "g8",
                                 "--cache", str(tmp_path / "shifted"), "--out", str(out)])
    saved = load_results(out)
    assert saved["records"] == records and [r["key"] for r in records] == ["lp", "lpft", "g8"]
    assert saved["setting"]["shifts"] == ["jpeg"] and saved["setting"]["severity"] == 3
    assert saved["setting"]["photos"]["test"] == 9 and saved["setting"]["command"].startswith(
        "python -m benchmarks.which_layers ")
    assert format_table(summary(records)) in capsys.readouterr().out
    assert len(list((tmp_path / "shifted").rglob("*.png"))) == 9, "each shifted photo cached once"
