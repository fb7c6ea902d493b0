"""course.strategies on a tiny network: the same budget for every strategy, the validation loader for every
choice and curve, the test loader once at the end; what each strategy trains; the results file and table.

The tools are notebook 05's reference answers (benchmarks.reference), as the benchmark uses them."""
import pytest
import torch
from torch import nn

from benchmarks.reference import tools
from course.strategies import (
    STRATEGIES,
    Data,
    find_rates,
    format_table,
    load_results,
    run,
    save_results,
    summary,
)


class Counting:
    """A loader over fixed batches that counts how often it is iterated (each pass is one evaluation)."""

    def __init__(self, batches):
        self.batches, self.passes, self.generator = batches, 0, torch.Generator()

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        self.passes += 1
        order = torch.randperm(len(self.batches), generator=self.generator).tolist()
        return iter([self.batches[i] for i in order])


def tiny_new_model(seed, pretrained=True):
    """Four layer groups; 'pretrained' weights are those of seed 100, the head is seeded with ``seed``."""
    torch.manual_seed(100 if pretrained else 1000 + seed)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                        nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    torch.manual_seed(seed)
    net[7].reset_parameters()
    return net, [nn.ModuleList([net[0], net[1]]), net[3], net[5], net[7]]


def batches(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def test_choices_use_the_validation_loader_and_the_test_loader_is_read_once_per_finished_run():
    train, valid, test = Counting(batches(3, 0)), Counting(batches(2, 1)), Counting(batches(2, 2))
    data = Data(train, valid, torch.device("cpu"), sweep=6)
    curves = find_rates(tiny_new_model, data, tools())
    assert valid.passes == 0 and test.passes == 0, "range tests read the training photos only"
    assert {name: len(c.lrs) for name, c in curves.items()} == {"frozen": 6, "unfrozen": 6, "scratch": 6}
    for key, strategy in STRATEGIES.items():
        valid.passes = test.passes = 0
        _, record = run(strategy, tiny_new_model, data, tools(), 0, 4, 1e-2, test)
        assert test.passes == 1, f"{key}: the test photos once, when the run has finished"
        assert valid.passes == 4, f"{key}: a validation pass after each of the 4 epochs"
        assert record["steps"] == 4 * len(train), f"{key}: the same number of optimizer steps as every other"
        assert [row["epoch"] for row in record["epochs"]] == [1, 2, 3, 4]
        assert record["valid_acc"] == record["epochs"][-1]["accuracy"] and 0 <= record["test_acc"] <= 1


def changed(before, model):
    return sorted(n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach()))


def test_each_strategy_trains_what_it_says():
    data = Data(batches(3, 0), batches(2, 1), torch.device("cpu"))
    names = [n for n, _ in tiny_new_model(0)[0].named_parameters()]
    pretrained = dict(tiny_new_model(0)[0].named_parameters())
    trained = {}
    for key in "abcdes":
        model, record = run(STRATEGIES[key], tiny_new_model, data, tools(), 0, 4, 1e-2, data.valid)
        trained[key] = (model, record)
    before = {n: p.detach().clone() for n, p in pretrained.items()}
    head_only = trained["a"][0]
    assert changed(before, head_only) == ["7.bias", "7.weight"], "(a) moves the head only"
    assert torch.equal(head_only[1].running_mean, torch.zeros(8)), "(a) keeps frozen BatchNorm in eval mode"
    assert not torch.equal(trained["b"][0][1].running_mean, torch.zeros(8)), \
        "(b)'s trainable BatchNorm updates"
    assert not torch.equal(trained["c"][0][1].running_mean, torch.zeros(8)), \
        "(c) runs BatchNorm as fastai: updating"
    assert changed(before, trained["b"][0]) == sorted(names), "(b) moves everything"
    assert trained["e"][1]["ft_lr"] > 0, "LP-FT records the rate of its own range test after the probe"
    scratch = dict(tiny_new_model(0, pretrained=False)[0].named_parameters())
    assert not torch.equal(scratch["0.weight"], pretrained["0.weight"]), \
        "the baseline starts from other weights"


def test_lp_ft_probes_first_then_trains_everything_at_the_rate_its_range_test_chose():
    from course.strategies import lp_ft

    model, groups = tiny_new_model(0)
    loader = [(x, y) for x, y in batches(3, 0)]
    seen = []

    class Spy(list):
        def __iter__(self):
            seen.append({n: p.detach().clone() for n, p in model.named_parameters()})
            return super().__iter__()

    history = lp_ft(model, groups, Data(Spy(loader), batches(1, 1), torch.device("cpu"), sweep=10), tools(),
                    4, 1e-2)
    rows = [r for r in history.epochs]
    assert [r["trainable"] for r in rows] == [8 * 3 + 3] * 2 \
        + [sum(p.numel() for p in model.parameters())] * 2
    assert history.max_lr_of("7.weight", 0) == 1e-2 and history.max_lr_of("0.weight", 0) is None
    assert history.max_lr_of("0.weight", 1) == history.ft_lr == history.max_lr_of("7.weight", 1)
    with pytest.raises(ValueError, match="probe_epochs"):
        lp_ft(model, groups, Data(loader, loader, torch.device("cpu")), tools(), 1, 1e-2)


def test_the_results_file_round_trips_into_the_same_table(tmp_path):
    data = Data(batches(2, 0), batches(1, 1), torch.device("cpu"))
    records = [run(STRATEGIES[k], tiny_new_model, data, tools(), seed, 2, 1e-2, data.valid)[1]
               for seed in (0, 1) for k in "ab"]
    save_results(tmp_path / "r.json", records, {"rule": "test"}, {"data": "tiny"})
    saved = load_results(tmp_path / "r.json")
    assert saved["records"] == records and saved["setting"] == {"data": "tiny"} and saved["machine"]["torch"]
    rows = summary(saved["records"])
    assert [r["key"] for r in rows] == ["a", "b"] and rows[0]["seeds"] == [0, 1]
    accs = [100 * r["test_acc"] for r in records if r["key"] == "a"]
    assert rows[0]["test"]["mean"] == pytest.approx(sum(accs) / 2) and rows[0]["test"]["min"] == min(accs)
    table = format_table(rows)
    assert table.splitlines()[1].startswith("(a) head only") and f"{rows[1]['test']['mean']:5.1f}" in table


def test_weight_change_is_zero_for_frozen_groups_and_measured_against_the_start():
    data = Data(batches(3, 0), batches(1, 1), torch.device("cpu"))
    _, head = run(STRATEGIES["a"], tiny_new_model, data, tools(), 0, 2, 1e-2, data.valid)
    _, full = run(STRATEGIES["b"], tiny_new_model, data, tools(), 0, 2, 1e-2, data.valid)
    assert head["weight_change"] == [0.0, 0.0, 0.0], "(a) leaves the three pretrained groups where they were"
    assert len(full["weight_change"]) == 3 and all(0 < c < 1 for c in full["weight_change"])
    from course.strategies import relative_change

    w = torch.tensor([3.0, 4.0])
    assert relative_change([w], [w + torch.tensor([0.0, 0.5])]) == pytest.approx(0.1)
