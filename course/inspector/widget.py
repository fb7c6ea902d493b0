"""The inspector's ipywidgets front end. ``course.inspector.inspect`` builds it; the rows come from
``course.inspector.table``."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as W
from torch import nn
from torch.optim import Optimizer

from .table import Row, format_table, layer_table, totals

FreezeTo = Callable[[Sequence[nn.Module], int], None]
"""The student's ``freeze_to(groups, n)`` from notebook 02."""

_FROZEN_COLOUR = {"all": "#1f77b4", "some": "#9467bd", "none": "#2ca02c", "": "#7f7f7f"}


def _label(row: Row) -> str:
    parts = [f"<b>{html.escape(row.path.rsplit('.', 1)[-1])}</b> <span style='color:#777'>{row.kind}</span>"]
    if row.params:
        colour = _FROZEN_COLOUR[row.frozen]
        parts.append(f"<span style='color:{colour}'>{row.trainable:,}/{row.params:,} trainable</span>")
    if row.bn_mode:
        parts.append(f"BN {row.bn_mode}")
    if row.in_optimizer:
        lr = ",".join(f"{v:g}" for v in row.lr) or "-"
        wd = ",".join(f"{v:g}" for v in row.weight_decay) or "-"
        parts.append(f"opt: {row.in_optimizer} (lr {lr}, wd {wd})")
    if row.grad_norm is not None:
        parts.append(f"|grad| {row.grad_norm:.3g}")
    text = " · ".join(parts)
    for w in row.warnings:
        text += f"<br><span style='color:#d62728'>⚠ {html.escape(w)}</span>"
    if row.child_warnings:
        text += f" <span style='color:#d62728'>⚠ {row.child_warnings} below</span>"
    return text


class _RowView(W.VBox):
    """One module: an expand toggle, a freeze checkbox, a label, and (once expanded) its children."""

    def __init__(self, inspector: LayerInspector, path: str, has_children: bool) -> None:
        self.inspector, self.path = inspector, path
        self.toggle = W.ToggleButton(
            value=False,
            icon="chevron-right",
            layout=W.Layout(width="40px"),
            disabled=not has_children,
            tooltip="show children",
        )
        self.check = W.Checkbox(
            value=False, description="frozen", indent=False, layout=W.Layout(width="80px")
        )
        self.label = W.HTML()
        self.children_box = W.VBox(layout=W.Layout(margin="0 0 0 24px"))
        self.add_class("inspector-row")
        self.check.add_class("inspector-freeze")
        super().__init__([W.HBox([self.toggle, self.check, self.label]), self.children_box])
        self.toggle.observe(self._expand, "value")
        self.check.observe(self._freeze, "value")

    def show(self, row: Row) -> None:
        self.inspector._quiet = True
        try:
            self.check.value = row.frozen == "all"
            self.check.disabled = row.params == 0
            self.label.value = _label(row)
        finally:
            self.inspector._quiet = False

    def _expand(self, change: dict[str, Any]) -> None:
        self.toggle.icon = "chevron-down" if change["new"] else "chevron-right"
        if change["new"] and not self.children_box.children:
            self.children_box.children = self.inspector._views_below(self.path)
        self.children_box.layout.display = None if change["new"] else "none"

    def _freeze(self, change: dict[str, Any]) -> None:
        if not self.inspector._quiet:
            self.inspector.model.get_submodule(self.path).requires_grad_(not change["new"])
            self.inspector.refresh()


class LayerInspector(W.VBox):
    """The inspector widget. ``refresh()`` re-reads the model and optimizer (after training, or code)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer | None = None,
        groups: Sequence[nn.Module] | None = None,
        freeze_to: FreezeTo | None = None,
    ) -> None:
        self.model, self.optimizer, self.groups = model, optimizer, groups
        # the student's own (notebook 02): the course ships no freeze_to of its own
        self.freeze_to = freeze_to
        self._quiet = False
        self._views: dict[str, _RowView] = {}
        self.totals = W.HTML()
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.freeze_all = W.Button(description="Freeze all")
        self.unfreeze_all = W.Button(description="Unfreeze all")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.freeze_all.on_click(lambda _: self._set_all(False))
        self.unfreeze_all.on_click(lambda _: self._set_all(True))
        controls = [W.HBox([self.refresh_button, self.freeze_all, self.unfreeze_all])]
        self.slider = None
        self.group_checks = []
        if groups is not None:
            if freeze_to is not None:
                self.slider = W.IntSlider(
                    value=0, min=0, max=len(groups), description="freeze_to", continuous_update=False
                )
                self.slider.observe(self._slide, "value")
            self.group_checks = [
                W.Checkbox(value=False, description=f"group {i}", indent=False) for i in range(len(groups))
            ]
            for i, check in enumerate(self.group_checks):
                check.observe(lambda change, i=i: self._freeze_group(i, change["new"]), "value")
            self.group_labels = [W.HTML() for _ in groups]
            controls += [
                *([self.slider] if self.slider else []),
                W.VBox([W.HBox([c, lab]) for c, lab in zip(self.group_checks, self.group_labels)]),
            ]
        self.tree = W.VBox(self._views_below(""))
        super().__init__([self.totals, *controls, self.tree])
        self.add_class("layer-inspector")
        self.refresh()

    # -- building and refreshing -------------------------------------------------------------------------
    def _views_below(self, path: str) -> tuple[_RowView, ...]:
        prefix = f"{path}." if path else ""
        module = self.model.get_submodule(path) if path else self.model
        views = []
        for name, child in module.named_children():
            full = prefix + name
            view = _RowView(self, full, any(True for _ in child.children()))
            self._views[full] = view
            views.append(view)
        rows = {r.path: r for r in layer_table(self.model, self.optimizer)} if views else {}
        for view in views:
            view.show(rows[view.path])
        return tuple(views)

    def refresh(self) -> None:
        """Re-read requires_grad, modes, optimizer groups and gradients into every visible row."""
        rows = {r.path: r for r in layer_table(self.model, self.optimizer)}
        for path, view in self._views.items():
            if path in rows:
                view.show(rows[path])
        trainable, total, state = totals(self.model, self.optimizer)
        warnings = sum(len(r.warnings) for r in rows.values())
        text = f"<b>{trainable:,}</b> of {total:,} parameters trainable"
        if self.optimizer is not None:
            text += f" · optimizer state {state / 2**20:.2f} MiB"
        if warnings:
            text += f" · <span style='color:#d62728'>⚠ {warnings} warning(s)</span>"
        self.totals.value = text
        if self.groups is not None:
            group_rows = layer_table(self.model, self.optimizer, self.groups, by="group")
            self._quiet = True
            try:
                for check, label, row in zip(self.group_checks, self.group_labels, group_rows):
                    check.value = row.frozen == "all"
                    label.value = _label(row)
                if self.slider is not None:
                    self.slider.value = next(
                        (i for i, r in enumerate(group_rows) if r.frozen != "all"), len(group_rows)
                    )
            finally:
                self._quiet = False

    # -- actions -----------------------------------------------------------------------------------------
    def _set_all(self, trainable: bool) -> None:
        self.model.requires_grad_(trainable)
        self.refresh()

    def _slide(self, change: dict[str, Any]) -> None:
        if not self._quiet:
            self.freeze_to(self.groups, change["new"])
            self.refresh()

    def _freeze_group(self, i: int, frozen: bool) -> None:
        if not self._quiet:
            self.groups[i].requires_grad_(not frozen)
            self.refresh()

    # -- without a widget front end ----------------------------------------------------------------------
    def table(self, max_rows: int | None = 60) -> str:
        """The text table shown without a widget front end (first ``max_rows`` rows; None for all)."""
        return format_table(layer_table(self.model, self.optimizer), max_rows=max_rows)

    def __repr__(self) -> str:
        return self.table()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        bundle["text/plain"] = self.table()
        return bundle
