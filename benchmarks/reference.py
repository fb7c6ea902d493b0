"""The instructor's reference answers, read from the source notebooks, for the benchmarks.

The benchmarks run the strategies of ``course.strategies`` with the same tools a student's notebook 05
passes them; here those tools are the solutions in ``source/05_unfreezing`` themselves (its imports and
definitions: the given tools and the solution cells), so there is no second copy of an answer that could drift
from the notebook's.
"""
from functools import lru_cache
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "source"


def definitions(notebook):
    """Every import, function, class and constant that the code cells of ``notebook`` define, run in one
    namespace (``course.earlier.definitions``, which the student edition also uses); a dict."""
    from course.earlier import definitions as run_definitions

    return run_definitions(notebook)[0]


@lru_cache(maxsize=None)
def _space(name):
    return definitions(SOURCE / name / f"{name}.ipynb")


def layer_groups(model):
    """Notebook 02's reference ``layer_groups`` (a torchvision ResNet's six groups), for the full-data
    benchmark. The course package holds no copy: it would be that exercise's ready answer."""
    return _space("02_freezing")["layer_groups"](model)


@lru_cache(maxsize=None)
def tools():
    """``course.strategies.Tools`` filled with notebook 05's reference answers."""
    from course.strategies import Tools

    space = _space("05_unfreezing")
    return Tools(space["freeze_to"], space["even_mults"], space["bn_freeze"], space["fine_tune"],
                 space["unfreeze_schedule"])


@lru_cache(maxsize=None)
def surgery_tools():
    """``course.surgery.Tools`` filled with notebook 06's reference answers (and the helpers it is given)."""
    from course.surgery import Tools

    space = _space("06_which_layers")
    return Tools(space["surgical"], space["lp_ft"], space["relative_grad_norms"], space["cache_features"],
                 space["bn_freeze"], space["set_bn_eval"])
