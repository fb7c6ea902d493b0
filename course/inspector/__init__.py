"""The layer inspector: what is frozen, what the optimizer holds and at which learning rate, which
BatchNorm layers update their statistics, and where gradients flow.

``layer_table(model, optimizer, groups)`` is a pure function returning one ``Row`` per module (or per layer
group); ``format_table(rows)`` prints it; ``inspect(model, optimizer, groups)`` shows it as an ipywidgets
tree with freeze checkboxes, a ``freeze_to`` slider and a refresh button. Without a widget front end
(nbconvert, grading, a terminal) the same object shows the text table instead.

Notebook 06 adds a score per layer group: ``inspect(model, optimizer, groups, group_scores=lambda:
relative_grad_norms(model, groups, images, labels))`` shows each group's relative gradient norm (Auto-RGN's
score, ||grad|| / ||weights||) with a bar, and names the group Auto-RGN would give the largest learning
rate; ``layer_table(..., by="group", scores=[...])`` and ``format_table`` do the same in text. The scores
are always the caller's: like ``freeze_to``, the function that computes them is the student's (notebook 06's
exercise), and nothing in the course package computes a relative gradient norm.

Two modules: ``table`` (the rows and the text table: torch only) and ``widget`` (the ipywidgets front end,
which uses ``table``). ``inspect`` imports ``widget`` when called, so importing ``course.inspector`` does not
import ipywidgets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn
from torch.optim import Optimizer

from .table import SCORE_LABEL, Row, format_table, layer_table, totals

if TYPE_CHECKING:
    from .widget import FreezeTo, GroupScores, LayerInspector

__all__ = ["Row", "format_table", "inspect", "layer_table", "totals"]


def inspect(
    model: nn.Module,
    optimizer: Optimizer | None = None,
    groups: Sequence[nn.Module] | None = None,
    freeze_to: FreezeTo | None = None,
    group_scores: GroupScores | None = None,
    score_label: str = SCORE_LABEL,
) -> LayerInspector:
    """Show the inspector for ``model``: an ipywidgets tree in a notebook, the text table elsewhere.

    Args:
        optimizer: shows which parameters it holds, at which learning rate and weight decay.
        groups: layer groups (list of modules, input to output): adds a row per group, each with a checkbox
            that freezes or unfreezes that group.
        freeze_to: your ``freeze_to(groups, n)`` from notebook 02: with ``groups``, adds a slider that calls
            it. The course has no ``freeze_to`` of its own (it would be that exercise's answer), so without
            it there is no slider.
        group_scores: needs ``groups``: a function of no arguments returning one number per group, e.g.
            ``lambda: relative_grad_norms(model, groups, images, labels)`` with your function from notebook
            06. It is called now and on every refresh (the Refresh button, the freeze boxes, the slider), and
            each group row shows its score and a bar; a line names the group with the largest score, the
            one Auto-RGN would give the largest learning rate. Without ``groups`` it raises ValueError; a
            result of the wrong length or with a value that is not a finite number raises ValueError now.
            If your function raises, the inspector shows the error text instead of the scores (it does not
            fail), and a later refresh tries again.
        score_label: the name shown for the scores.
    """
    from .widget import LayerInspector  # ipywidgets is imported only when the inspector is shown

    return LayerInspector(
        model,
        optimizer=optimizer,
        groups=groups,
        freeze_to=freeze_to,
        group_scores=group_scores,
        score_label=score_label,
    )
