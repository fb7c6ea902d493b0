"""Notebook 06 as an experiment: the test photos, clean and shifted, are read only to score finished runs,
and every figure its prose quotes is in the results file it prints (written by benchmarks.which_layers)."""
import ast
import inspect
import json
from pathlib import Path

import pytest

import course.surgery
from course.strategies import load_results
from course.surgery import RECIPES, summary
from tests.support.prose import quoted

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "source" / "06_which_layers" / "06_which_layers.ipynb"
RESULTS = ROOT / "course" / "results" / "which_layers_pets-3breeds_128px_cpu.json"


@pytest.fixture(scope="module")
def results():
    return load_results(RESULTS)


def derivable(results):
    """Every figure the results file gives, as the prose may write it: accuracies in % with one decimal
    (mean, min, max, sd of each recipe and test set, each seed's, differences of means), distortions with
    three decimals, rates, and the setting's sizes."""
    rows = summary(results["records"])
    figures = set()
    for r in rows:
        spreads = [r["valid"], r["clean"], r["shifted"], *r["per_shift"].values()]
        for s in spreads:
            figures |= {f"{s[k]:.1f}" for k in ("mean", "min", "max", "sd")}
        for k in ("distortion_clean", "distortion_shifted"):
            figures |= {f"{r[k][stat]:.3f}" for stat in ("mean", "min", "max")}
    for a in rows:
        for b in rows:
            for k in ("valid", "clean", "shifted"):
                figures.add(f"{abs(a[k]['mean'] - b[k]['mean']):.1f}")
            figures |= {f"{abs(a['per_shift'][n]['mean'] - b['per_shift'][n]['mean']):.1f}"
                        for n in a["per_shift"]}
    for record in results["records"]:
        figures |= {f"{100 * v:.1f}" for v in record["test"].values()}
        figures.add(f"{100 * record['valid_acc']:.1f}")
    figures |= {f"{c['suggestion']:.1e}" for c in results["rates"].values() if isinstance(c, dict)}
    setting = results["setting"]
    figures |= {str(v) for v in setting["photos"].values()} | {
        str(setting[k]) for k in ("size", "batch", "probe_epochs", "tune_epochs", "classes", "severity")}
    figures.add(str(setting["probe_epochs"] + setting["tune_epochs"]))
    figures.add(f"{setting['seconds'] / 60:.0f}")
    figures |= {f"{s:.3g}" for s in setting["relative_grad_norms"]}
    return figures


def test_the_results_file_says_what_was_run_where_and_from_which_commit(results):
    setting, machine = results["setting"], results["machine"]
    assert setting["command"].startswith("python -m benchmarks.which_layers")
    assert len(setting["seeds"]) >= 3, "at least three seeds, for a spread"
    assert setting["commit"] not in ("", "unknown") and machine["device"] and machine["date"]
    runs = sorted((r["seed"], r["key"]) for r in results["records"])
    assert runs == sorted((s, k) for s in setting["seeds"] for k in RECIPES), "every recipe from every seed"
    for r in results["records"]:
        assert sorted(r["test"]) == sorted(["clean", *setting["shifts"]]), "every test set scored once"
        assert len(r["epochs"]) == setting["probe_epochs"] + setting["tune_epochs"], "the same budget"


def test_the_test_photos_are_read_only_to_score_a_finished_run():
    """``data.tests`` is read in ``features`` alone, and ``features`` is called by ``score`` and, for the
    pretrained model the distortion is measured from, by ``run_seed``; ``score`` only at the end of a run."""
    tree = ast.parse(inspect.getsource(course.surgery))
    readers = {fn.name for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef)
               for node in ast.walk(fn) if isinstance(node, ast.Attribute) and node.attr == "tests"}
    assert readers == {"features"}, readers
    callers = {fn.name for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and fn.name != "features"
               for node in ast.walk(fn)
               if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "features"}
    assert callers == {"score", "run_seed"}, callers
    run_seed = next(fn for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and fn.name == "run_seed")
    source = ast.unparse(run_seed)
    assert source.index("score(model") > source.rindex("_fit("), "scored after the last training call"
    cells = ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"]
             if c["cell_type"] == "code"]
    touching = [line for cell in cells for line in cell.splitlines() if "test_loaders" in line]
    assert all("= {name: make_loader" in line or "Data(" in line for line in touching), touching


def test_every_figure_in_notebook_06s_benchmark_prose_is_in_its_results_file(results):
    cells = [("".join(c["source"])) for c in json.loads(NOTEBOOK.read_text())["cells"]
             if c["cell_type"] == "markdown"]
    prose = [s for s in cells
             if s.startswith(("**What the benchmark found.**", "**Feature distortion, measured.**"))]
    assert len(prose) == 2, "two prose cells read the benchmark's figures"
    unsupported = sorted(set().union(*(quoted(p) for p in prose)) - derivable(results))
    assert not unsupported, f"figures in the prose that the results file does not give: {unsupported}"
