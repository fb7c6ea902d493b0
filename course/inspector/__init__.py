"""The layer inspector: what is frozen, what the optimizer holds and at which learning rate, which
BatchNorm layers update their statistics, and where gradients flow.

``layer_table(model, optimizer, groups)`` is a pure function returning one ``Row`` per module (or per layer
group); ``format_table(rows)`` prints it; ``inspect(model, optimizer, groups)`` shows it as an ipywidgets
tree with freeze checkboxes, a ``freeze_to`` slider and a refresh button. Without a widget front end
(nbconvert, grading, a terminal) the same object shows the text table instead.

Two modules: ``table`` (the rows and the text table: torch only) and ``widget`` (the ipywidgets front end,
which uses ``table``). ``inspect`` imports ``widget`` when called, so importing ``course.inspector`` does not
import ipywidgets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn
from torch.optim import Optimizer

from .table import Row, format_table, layer_table, totals

if TYPE_CHECKING:
    from .widget import FreezeTo, LayerInspector

__all__ = ["Row", "format_table", "inspect", "layer_table", "totals"]


def inspect(
    model: nn.Module,
    optimizer: Optimizer | None = None,
    groups: Sequence[nn.Module] | None = None,
    freeze_to: FreezeTo | None = None,
) -> LayerInspector:
    """Show the inspector for ``model``: an ipywidgets tree in a notebook, the text table elsewhere.

    Args:
        optimizer: shows which parameters it holds, at which learning rate and weight decay.
        groups: layer groups (list of modules, input to output): adds a row per group, each with a checkbox
            that freezes or unfreezes that group.
        freeze_to: your ``freeze_to(groups, n)`` from notebook 02: with ``groups``, adds a slider that calls
            it. The course has no ``freeze_to`` of its own (it would be that exercise's answer), so without
            it there is no slider.
    """
    from .widget import LayerInspector  # ipywidgets is imported only when the inspector is shown

    return LayerInspector(model, optimizer=optimizer, groups=groups, freeze_to=freeze_to)
