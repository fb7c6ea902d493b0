"""Notebook 05 as an experiment: nothing is chosen on the test photos, and every figure its prose quotes is
in the results file the notebook prints its tables from (course/results/, written by the benchmark)."""
import ast
import json
import re
from pathlib import Path

import pytest

from course.strategies import STRATEGIES, load_results, summary
from tests.support.prose import quoted

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "source" / "05_unfreezing" / "05_unfreezing.ipynb"
RESULTS = ROOT / "course" / "results" / "pets-sample_224px_cpu.json"


def cells(kind):
    return ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == kind]


def test_notebook_05_reads_the_test_photos_only_once_a_strategy_has_finished():
    """The test loader is made, and passed to course.strategies.run (which scores it once, after training:
    tests/unit/test_strategies.py); no other line of the notebook touches the test photos."""
    allowed = [r'^test_set = load_pets\("test"', r"^    trainval, trainval_plain, test_set = \(small_subset",
               r"^test_loader = make_loader\(test_set,",
               r'^print\(f"\{len\(classes\)\} breeds.*len\(test_set\)',
               r"^        model, record = run\(strategy, new_model, data, tools, seed, EPOCHS, "
               r"rates\[strategy.rate_from\], test_loader,$"]
    touching = [line for source in cells("code") for line in source.splitlines()
                if re.search(r"\btest_(set|loader)\b", line)]
    assert touching, "the notebook has a test split"
    stray = [line for line in touching if not any(re.search(pattern, line) for pattern in allowed)]
    assert not stray, f"lines that read the test photos outside the final scoring: {stray}"
    assert any("valid_loader" in line and "Data(" in line
               for s in cells("code") for line in s.splitlines()), \
        "the strategies are given the validation loader for their curves and choices"


def test_the_benchmark_passes_the_test_loader_only_to_the_final_scoring():
    """In benchmarks/accuracy.py the test loader is read once: the last argument of ``run``, which scores the
    chosen model on it after training; every choice is made on the validation loader."""
    source = (ROOT / "benchmarks" / "accuracy.py").read_text()
    tree = ast.parse(source)
    uses = [node for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "test_loader"
            or isinstance(node, ast.Name) and node.id == "test_loader"]
    scoring = [call for call in ast.walk(tree) if isinstance(call, ast.Call)
               and isinstance(call.func, ast.Name) and call.func.id == "run"]
    assert len(uses) == 1 and [ast.unparse(c.args[-1]) for c in scoring] == ["setup.test_loader"], \
        [ast.unparse(u) for u in uses]
    assert "Data(setup.train_loader, setup.valid_loader, device, args.finder_steps)" in source


def derivable(results):
    """Every figure the file supports, as the prose may write it: accuracies (mean, min, max, sd of
    validation, test and training accuracy per strategy, one decimal), differences between two strategies'
    means (one decimal), seconds (no decimals), rates (two significant digits) and the setting's counts."""
    rows = summary(results["records"])
    figures = set()
    for r in rows:
        for split in ("valid", "test", "train"):
            figures |= {f"{r[split][k]:.1f}" for k in ("mean", "min", "max", "sd")}
        figures |= {f"{r['seconds']:.0f}", str(r["steps"])}
        for seed_record in (x for x in results["records"] if x["key"] == r["key"]):
            figures |= {f"{100 * seed_record[k]:.1f}" for k in ("valid_acc", "test_acc", "train_acc")}
            figures.add(f"{seed_record['seconds']:.0f}")
    for a in rows:
        for b in rows:
            for split in ("valid", "test", "train"):
                figures.add(f"{abs(a[split]['mean'] - b[split]['mean']):.1f}")
    for name, rate in results["rates"].items():
        if isinstance(rate, dict):
            figures.add(f"{rate['suggestion']:.1e}")
    for r in results["records"]:
        if "ft_lr" in r:
            figures.add(f"{r['ft_lr']:.1e}")
    setting = results["setting"]
    figures |= {str(v) for v in setting["photos"].values()} | {
        str(setting["size"]), str(setting["batch"]), str(setting["epochs"]), str(setting["classes"])}
    return figures


@pytest.fixture(scope="module")
def results():
    return load_results(RESULTS)


def test_the_results_file_says_what_was_run_where_and_from_which_commit(results):
    setting, machine = results["setting"], results["machine"]
    assert setting["command"].startswith("python -m benchmarks.accuracy")
    assert len(setting["seeds"]) >= 3, "at least three seeds, for a spread"
    assert setting["photos"]["valid"] > 0 and setting["commit"] not in ("", "unknown")
    assert machine["device"] and machine["torch"] and machine["date"]
    assert {r["key"] for r in results["records"]} == set(STRATEGIES), "every strategy, the baseline too"
    steps = {r["steps"] for r in results["records"]}
    assert len(steps) == 1, f"the same number of optimizer steps for every strategy, got {steps}"


def test_every_figure_in_notebook_05s_benchmark_prose_is_in_its_results_file(results):
    """The prose after section 8's table: a figure that is not in the file (a stale number after the benchmark
    was run again, a typo, a figure from another run) fails here."""
    prose = [s for s in cells("markdown") if s.startswith("**What wins, and by how much.**")]
    assert len(prose) == 1, "one prose cell reads the benchmark's table"
    unsupported = sorted(quoted(prose[0]) - derivable(results))
    assert not unsupported, f"figures in the prose that the results file does not give: {unsupported}"


def test_the_prose_checker_catches_a_figure_the_file_does_not_hold(results):
    rows = summary(results["records"])
    good = f"(a) reached {rows[0]['valid']['mean']:.1f} % on validation"
    assert not quoted(good) - derivable(results)
    bad = f"(a) reached {rows[0]['valid']['mean'] + 0.3:.1f} % on validation"
    assert quoted(bad) - derivable(results)
