"""Plots the notebooks share. matplotlib is imported when a plot is drawn, not when ``course`` is."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for the annotations only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .fit import History


def plot_grad_norms(cases: dict[str, dict[str, float]], ax: Axes | None = None,
                    title: str = "Gradient norm per parameter") -> Axes:
    """Draw one horizontal bar per parameter and case: the L2 norm of its gradient, on a log axis.

    Args:
        cases: ``{case name: {parameter name: norm}}``, norms as non-negative floats. A parameter missing
            from a case (its ``.grad`` was None) is drawn as the text "no grad" instead of a bar.
        ax: a matplotlib Axes to draw on; a new figure is made when None.

    Returns:
        The Axes drawn on.
    """
    import matplotlib.pyplot as plt

    if not cases:
        raise ValueError("cases is empty: nothing to plot")
    names = []
    for norms in cases.values():
        names += [n for n in norms if n not in names]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.2 * len(names) * len(cases) + 1.2))
    height = 0.8 / len(cases)
    positive = [v for norms in cases.values() for v in norms.values() if v > 0]
    floor = min(positive) / 10 if positive else 1e-8  # where the log axis starts; zero norms sit here
    top = max(positive) * 2 if positive else 1.0
    for k, (case, norms) in enumerate(cases.items()):
        color = f"C{k}"
        rows = [(i + k * height, n) for i, n in enumerate(names)]
        drawn = [(y, norms[n]) for y, n in rows if n in norms]
        # bars start at the axis floor and end at the norm, so their right ends read true on the log axis
        ax.barh([y for y, _ in drawn], [max(v - floor, 0.0) for _, v in drawn], height=height, left=floor,
                label=case, color=color)
        for y, n in rows:
            if n not in norms or norms[n] == 0:
                label = "no grad" if n not in norms else "0.0"
                ax.text(floor * 1.15, y, label, va="center", fontsize=8, color=color)
    ax.set_xscale("log")
    ax.set_xlim(floor, top)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xlabel("‖grad‖₂ (log scale)")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return ax


def plot_freeze_cost(rows: list[dict[str, float]], title: str = "What freezing saves") -> Figure:
    """Two panels against the number of frozen groups: step time (forward and backward) and saved memory.

    Args:
        rows: list of dicts, one per number of frozen groups, with keys ``frozen`` (int), ``forward_s``,
            ``backward_s`` (seconds) and ``saved_bytes`` (bytes), as ``course.measure.train_step_cost``
            gives them plus ``frozen``; ``peak_bytes`` is drawn too where present (CUDA).

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("rows is empty: nothing to plot")
    k = [r["frozen"] for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_t.plot(k, [1e3 * r["forward_s"] for r in rows], "o-", label="forward")
    ax_t.plot(k, [1e3 * r["backward_s"] for r in rows], "s-", label="backward")
    ax_t.set_xlabel("groups frozen (from the input)")
    ax_t.set_ylabel("milliseconds per step (median)")
    ax_t.legend()
    ax_m.plot(k, [r["saved_bytes"] / 2**20 for r in rows], "o-", label="saved for backward")
    if all("peak_bytes" in r for r in rows):
        ax_m.plot(k, [r["peak_bytes"] / 2**20 for r in rows], "s-", label="CUDA peak allocated")
    ax_m.set_xlabel("groups frozen (from the input)")
    ax_m.set_ylabel("MiB")
    ax_m.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_histories(
    histories: dict[str, History | dict[str, Any] | Sequence[History | dict[str, Any]]],
    title: str = "Accuracy of each strategy",
) -> Figure:
    """Validation accuracy against epochs (left) and against training wall time (right), one line each.

    Args:
        histories: ``{label: course.fit.History}`` (or lists of such histories, one per seed: drawn as their
            mean with a band from the lowest to the highest seed), each with validation accuracy per epoch;
            the run records of ``course.strategies.run`` (dicts with ``"epochs"``) are drawn alike.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if not histories:
        raise ValueError("histories is empty: nothing to plot")
    fig, (ax_e, ax_t) = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for k, (label, runs) in enumerate(histories.items()):
        runs = runs if isinstance(runs, (list, tuple)) else [runs]
        runs = [h["epochs"] if isinstance(h, dict) else h.epochs for h in runs]
        n = min(len(rows) for rows in runs)
        if n == 0 or any(rows[i]["accuracy"] is None for rows in runs for i in range(n)):
            raise ValueError(f"{label}: every epoch needs a validation accuracy (pass valid_loader)")
        acc = [[100 * rows[i]["accuracy"] for rows in runs] for i in range(n)]
        secs = [sum(rows[i]["seconds"] for rows in runs) / len(runs) for i in range(n)]
        mean = [sum(a) / len(a) for a in acc]
        epochs = list(range(1, n + 1))
        color = f"C{k}"
        for ax, x in ((ax_e, epochs), (ax_t, secs)):
            ax.plot(x, mean, "o-", color=color, label=label if ax is ax_e else None)
            if len(runs) > 1:
                ax.fill_between(x, [min(a) for a in acc], [max(a) for a in acc], color=color, alpha=0.15)
    ax_e.set_xlabel("epoch")
    ax_e.set_ylabel("validation accuracy (%)")
    ax_t.set_xlabel("training wall time (s)")
    ax_e.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_lrs(history: History, ax: Axes | None = None,
             title: str = "Learning rate of each layer group") -> Axes:
    """The learning rate of every layer group at every optimizer step, on a log axis, phase after phase.

    A layer group whose parameters were all frozen in a phase has no line there. Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if not history.lrs:
        raise ValueError("the history has no steps: nothing to plot")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.2))
    start = 0
    for groups, length in zip(history.groups, history.phase_steps):
        drawn = set()
        for g, group in enumerate(groups):
            if group["layer"] in drawn:
                continue  # the no-decay twin of a layer group follows the same schedule
            drawn.add(group["layer"])
            ys = [history.lrs[s][g] for s in range(start, start + length)]
            ax.plot(range(start, start + length), ys, color=f"C{group['layer'] % 10}",
                    label=f"group {group['layer']}")
        start += length
        ax.axvline(start, color="grey", lw=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # a group trained in several phases: one legend entry
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax
