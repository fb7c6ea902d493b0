"""The inspector's ipywidgets front end. ``course.inspector.inspect`` builds it; the rows come from
``course.inspector.table``.

With ``groups`` and ``group_scores`` (notebook 06: the student's relative gradient norms, Auto-RGN's score)
each group row also shows its score and a bar scaled to the largest score, and a line says which group
Auto-RGN would give the largest learning rate. The scores come from the student's callable: the course
computes none of them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as W
from torch import nn
from torch.optim import Optimizer

from .table import SCORE_LABEL, Row, check_scores, format_table, layer_table, totals

FreezeTo = Callable[[Sequence[nn.Module], int], None]
"""The student's ``freeze_to(groups, n)`` from notebook 02."""

GroupScores = Callable[[], Sequence[float]]
"""A zero-argument callable returning one number per layer group, e.g. notebook 06's
``lambda: relative_grad_norms(model, groups, images, labels)``."""

_FROZEN_COLOUR = {"all": "#1f77b4", "some": "#9467bd", "none": "#2ca02c", "": "#7f7f7f"}


def _label(row: Row, score_label: str = SCORE_LABEL) -> str:
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
    if row.score is not None:
        parts.append(f"<b>{html.escape(score_label)} {row.score:.3g}</b>")
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
    """The inspector widget. ``refresh()`` re-reads the model and optimizer (after training, or code).

    ``group_scores`` (needs ``groups``): a zero-argument callable returning one number per group (notebook
    06: your relative gradient norms), called on creation and on every refresh; each group row shows its
    score under ``score_label`` with a bar, and a line names the group with the largest score. A result
    of the wrong length or with a value that is not a finite number raises ValueError on creation. If the
    callable raises (or, on a refresh, returns something wrong), the inspector does not fail: it shows
    the error text in place of the scores (``score_error``) until a refresh succeeds.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer | None = None,
        groups: Sequence[nn.Module] | None = None,
        freeze_to: FreezeTo | None = None,
        group_scores: GroupScores | None = None,
        score_label: str = SCORE_LABEL,
    ) -> None:
        if group_scores is not None and groups is None:
            raise ValueError(
                "group_scores needs groups: the scores are one per layer group, so pass groups=[...] too"
            )
        if group_scores is not None and not callable(group_scores):
            raise ValueError(
                "group_scores must be a function of no arguments returning one number per group, "
                "e.g. lambda: relative_grad_norms(model, groups, images, labels)"
            )
        self.model, self.optimizer, self.groups = model, optimizer, groups
        # the student's own (notebook 02): the course ships no freeze_to of its own
        self.freeze_to = freeze_to
        # the student's own (notebook 06): the course computes no relative gradient norms
        self.group_scores, self.score_label = group_scores, score_label
        self.scores: list[float] | None = None
        self.score_error: str | None = None
        self.score_bars: list[W.FloatProgress] = []
        self.score_summary = W.HTML()
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
            if group_scores is not None:
                self.score_bars = [
                    W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="120px"))
                    for _ in groups
                ]
            bars = self.score_bars or [None] * len(groups)
            controls += [
                *([self.slider] if self.slider else []),
                W.VBox(
                    [
                        W.HBox([c, *([bar] if bar else []), lab])
                        for c, bar, lab in zip(self.group_checks, bars, self.group_labels)
                    ]
                ),
                *([self.score_summary] if group_scores is not None else []),
            ]
        self.tree = W.VBox(self._views_below(""))
        super().__init__([self.totals, *controls, self.tree])
        self.add_class("layer-inspector")
        if group_scores is not None:
            # a callable that returns the wrong thing is a mistake in how it is passed: say so at once
            self._read_scores(strict=True)
        self._show()

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

    def _read_scores(self, strict: bool = False) -> None:
        """Call ``group_scores`` into ``scores``; on an error keep its text in ``score_error`` (``strict``:
        a wrong result raises ValueError instead; an error raised by the callable itself is always kept)."""
        try:
            values = self.group_scores()
        except Exception as err:  # noqa: BLE001 - the student's code failed: show it in the inspector
            self.scores, self.score_error = None, f"group_scores raised {type(err).__name__}: {err}"
            return
        try:
            self.scores, self.score_error = check_scores(values, len(self.groups)), None
        except ValueError as err:
            if strict:
                raise ValueError(f"group_scores returned something unusable: {err}") from None
            self.scores, self.score_error = None, f"group_scores returned something unusable: {err}"

    def _score_summary(self) -> str:
        label = html.escape(self.score_label)
        if self.score_error is not None:
            return f"<span style='color:#d62728'>⚠ {html.escape(self.score_error)}</span>"
        if not self.scores:
            return f"{label}: no layer groups"
        top = max(range(len(self.scores)), key=self.scores.__getitem__)  # the first of equal largest
        if self.scores[top] <= 0:
            return f"{label}: no group has a score above 0 (no gradients yet?)"
        return (
            f"{label}: largest in <b>group {top}</b> ({self.scores[top]:.3g}), "
            f"so Auto-RGN would give group {top} the largest learning rate"
        )

    def refresh(self) -> None:
        """Re-read requires_grad, modes, optimizer groups and gradients into every visible row, and call
        ``group_scores`` again (first, so the rows show any gradients it leaves behind). The freeze boxes,
        the slider and the buttons refresh too, so each of them calls ``group_scores`` once."""
        if self.group_scores is not None:
            self._read_scores()
        self._show()

    def _show(self) -> None:
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
            group_rows = layer_table(self.model, self.optimizer, self.groups, by="group", scores=self.scores)
            self._quiet = True
            try:
                for check, label, row in zip(self.group_checks, self.group_labels, group_rows):
                    check.value = row.frozen == "all"
                    label.value = _label(row, self.score_label)
                if self.group_scores is not None:
                    top = max(self.scores) if self.scores else 0.0
                    for i, bar in enumerate(self.score_bars):
                        share = self.scores[i] / top if self.scores and top > 0 else 0.0
                        bar.value = min(max(share, 0.0), 1.0)
                        bar.bar_style = "success" if self.scores and top > 0 and share == 1.0 else "info"
                    self.score_summary.value = self._score_summary()
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
        """The text table shown without a widget front end (first ``max_rows`` rows; None for all).

        With ``group_scores``, a second table of the group rows follows, with the scores of the last
        refresh (the callable is not called again here) or the error it gave.
        """
        text = format_table(layer_table(self.model, self.optimizer), max_rows=max_rows)
        if self.group_scores is None:
            return text
        rows = layer_table(self.model, self.optimizer, self.groups, by="group", scores=self.scores)
        summary = html.unescape(re.sub(r"<[^>]+>", "", self._score_summary()))
        return f"{text}\n\n{format_table(rows, score_label=self.score_label)}\n{summary}"

    def __repr__(self) -> str:
        return self.table()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        bundle["text/plain"] = self.table()
        return bundle
