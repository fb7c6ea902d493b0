"""The instructor's reference answers, read from the source notebooks, for the benchmarks.

The benchmarks run the strategies of ``course.strategies`` with the same tools a student's notebook 05
passes them; here those tools are the solutions in ``source/05_unfreezing`` themselves (the cells that only
define functions or classes: the given tools and the solution cells), so there is no second copy of an
answer that could drift from the notebook's.
"""
import ast
import json
from functools import lru_cache
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "source"


def definitions(notebook):
    """Every function and class that the code cells of ``notebook`` define in cells holding nothing but
    imports and definitions, executed in one namespace (with torch, nn, F and course.fit's names); a dict."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from course.fit import History, evaluate, fit_one_cycle

    space = {"torch": torch, "nn": nn, "F": F, "History": History, "fit_one_cycle": fit_one_cycle,
             "evaluate": evaluate}
    cells = json.loads(Path(notebook).read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        code = "".join(cell["source"])
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        kinds = (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
        if tree.body and all(isinstance(node, kinds) for node in tree.body):
            exec(compile(tree, f"{Path(notebook).name}", "exec"), space)
    return space


@lru_cache(maxsize=None)
def _space(name):
    return definitions(SOURCE / name / f"{name}.ipynb")


def layer_groups(model):
    """Notebook 02's reference ``layer_groups`` (a torchvision ResNet's six groups), for the full-data benchmark.
    The course package holds no copy: it would be that exercise's ready answer."""
    return _space("02_freezing")["layer_groups"](model)


@lru_cache(maxsize=None)
def tools():
    """``course.strategies.Tools`` filled with notebook 05's reference answers."""
    from course.strategies import Tools

    space = _space("05_unfreezing")
    return Tools(space["freeze_to"], space["even_mults"], space["bn_freeze"], space["fine_tune"],
                 space["unfreeze_schedule"])
