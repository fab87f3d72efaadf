"""Figures of the report, drawn with matplotlib's Agg backend (no display needed, no pyplot global state).

Each function takes plain numbers, draws one PNG file and returns its path; finding and aggregating runs is
:mod:`harness.compare`'s job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_cost_curve", "plot_training_curves"]

_DPI = 110
# Bound lines: dashed for "no labels" (the floor), dotted for "all labels" (the ceiling).
_BOUND_STYLE = {"no labels": "--", "all labels": ":"}
_BOUND_COLOURS = ("tab:green", "tab:olive", "tab:cyan", "tab:purple", "tab:brown", "tab:pink", "tab:grey")
# Lines a figure can tell apart: ten colours, then the same colours with another dash pattern.
_LINE_COLOURS = (
    "tab:blue",
    "tab:orange",
    "tab:red",
    "tab:green",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:grey",
    "tab:olive",
    "tab:cyan",
)
_LINE_STYLES = ("-", "--", ":", "-.")
_BAND_ALPHA = 0.15


def _line_style(index: int) -> dict[str, str]:
    """Colour and dash pattern of the ``index``-th line: distinct for the first 40 lines."""
    return {
        "color": _LINE_COLOURS[index % len(_LINE_COLOURS)],
        "linestyle": _LINE_STYLES[(index // len(_LINE_COLOURS)) % len(_LINE_STYLES)],
    }


def _band(ax: Any, xs: Sequence[float], means: Sequence[float], stds: Sequence[float | None], **style: Any) -> None:
    """The shaded band of +- one std around a line of means (a missing or NaN std gives no width there)."""
    spreads = [0.0 if s is None or math.isnan(s) else s for s in stds]
    if len(xs) == 1:
        # A band over one x has no width: show that point's spread as an error bar instead.
        ax.errorbar(xs, means, yerr=spreads, color=style["color"], capsize=3, linewidth=0, elinewidth=1)
        return
    ax.fill_between(
        xs,
        [m - s for m, s in zip(means, spreads)],
        [m + s for m, s in zip(means, spreads)],
        color=style["color"],
        alpha=_BAND_ALPHA,
        linewidth=0,
    )


def _save(fig: Figure, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


def plot_cost_curve(
    path: Path | str,
    title: str,
    lines: Mapping[str, Sequence[Mapping[str, float | None]]],
    bounds: Sequence[Mapping[str, Any]] = (),
    budget_2n: int | None = None,
) -> Path:
    """mAP and Rank-1 against pair queries spent, one line per selection strategy (mean over seeds) with a
    shaded band of +- one std.

    Args:
        path: the PNG file to write (folders are created).
        title: the figure title (name the data set).
        lines: ``{label: [{"queries", "queries_std", "mAP", "mAP_std", "rank1", "rank1_std"}, ...]}``, points
            in drawing order; stds may be ``None`` (one run). Percent for mAP and Rank-1. ``queries_std`` is
            not drawn: the report's table states it, and a horizontal band would hide the vertical one.
        bounds: horizontal reference lines, each ``{"label", "setting", "mAP", "rank1"}`` (a ``None`` value is
            not drawn); the setting picks the line style.
        budget_2n: when given, a vertical line marks the 2n budget.

    Returns:
        ``path``.
    """
    fig = Figure(figsize=(11, 4.6))
    axes = fig.subplots(1, 2)
    for ax, metric, name in zip(axes, ("mAP", "rank1"), ("mAP (%)", "Rank-1 (%)")):
        for index, (label, points) in enumerate(lines.items()):
            xs = [p["queries"] for p in points]
            ys = [p[metric] for p in points]
            style = _line_style(index)
            ax.plot(xs, ys, marker="o", label=label, **style)
            _band(ax, xs, ys, [p.get(f"{metric}_std") for p in points], **style)
        for index, bound in enumerate(bounds):
            if bound.get(metric) is not None:
                ax.axhline(
                    bound[metric],
                    linestyle=_BOUND_STYLE.get(bound.get("setting", ""), "-."),
                    linewidth=1.2,
                    color=_BOUND_COLOURS[index % len(_BOUND_COLOURS)],
                    label=bound["label"],
                )
        if budget_2n:
            ax.axvline(budget_2n, linestyle=":", linewidth=1, color="black", label="2n budget")
        if not lines:
            ax.text(0.5, 0.5, "no runs yet", transform=ax.transAxes, ha="center", va="center", color="grey")
        ax.set_xlabel("pair queries spent")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    # One legend for both panels, under them: the bound labels are long and would hide the points.
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def plot_training_curves(
    path: Path | str, title: str, variants: Mapping[str, Mapping[str, Sequence[Mapping[str, float]]]]
) -> Path:
    """mAP vs epoch, queries spent vs epoch and mAP vs queries spent: one line per variant (mean over its
    seeds) with a shaded band of +- one std, so that the figure reads the same at any number of runs.

    Args:
        path: the PNG file to write.
        title: the figure title.
        variants: ``{variant label: bands}``, the bands as :func:`harness.compare.training_bands` returns
            them (``"mAP"``, ``"queries_spent"``, ``"cost"``: lists of ``{"x", "mean", "std", "n"}``).

    Returns:
        ``path``.
    """
    fig = Figure(figsize=(15, 4.2))
    ax_map, ax_queries, ax_cost = fig.subplots(1, 3)
    for index, (label, bands) in enumerate(variants.items()):
        style = _line_style(index)
        for ax, name, marker in ((ax_map, "mAP", "o"), (ax_queries, "queries_spent", ""), (ax_cost, "cost", "o")):
            points = bands.get(name, [])
            xs, means = [p["x"] for p in points], [p["mean"] for p in points]
            ax.plot(xs, means, marker=marker or None, label=label if ax is ax_cost else None, **style)
            _band(ax, xs, means, [p["std"] for p in points], **style)
    for ax, xlabel, ylabel in (
        (ax_map, "epoch", "mAP (%)"),
        (ax_queries, "epoch", "pair queries spent"),
        (ax_cost, "pair queries spent", "mAP (%)"),
    ):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if variants:
        ax_cost.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        ax_map.text(0.5, 0.5, "no runs yet", transform=ax_map.transAxes, ha="center", va="center", color="grey")
    fig.suptitle(f"{title} (mean over seeds, band: +- one std)")
    return _save(fig, path)
