"""Figures of the report, drawn with matplotlib's Agg backend (no display needed, no pyplot global state).

Each function takes plain numbers, draws one PNG file and returns its path; finding and aggregating runs is
:mod:`harness.compare`'s job.
"""

from __future__ import annotations

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
    """mAP and Rank-1 against pair queries spent, one line per selection strategy.

    Args:
        path: the PNG file to write (folders are created).
        title: the figure title (name the data set).
        lines: ``{label: [{"queries", "queries_std", "mAP", "mAP_std", "rank1", "rank1_std"}, ...]}``, points
            in drawing order; stds may be ``None`` (one run). Percent for mAP and Rank-1.
        bounds: horizontal reference lines, each ``{"label", "setting", "mAP", "rank1"}`` (a ``None`` value is
            not drawn); the setting picks the line style.
        budget_2n: when given, a vertical line marks the 2n budget.

    Returns:
        ``path``.
    """
    fig = Figure(figsize=(11, 4.6))
    axes = fig.subplots(1, 2)
    for ax, metric, name in zip(axes, ("mAP", "rank1"), ("mAP (%)", "Rank-1 (%)")):
        for label, points in lines.items():
            xs = [p["queries"] for p in points]
            ys = [p[metric] for p in points]
            xerr = [p.get("queries_std") or 0.0 for p in points]
            yerr = [p.get(f"{metric}_std") or 0.0 for p in points]
            ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, marker="o", capsize=3, label=label)
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
    path: Path | str, title: str, runs: Mapping[str, Sequence[Mapping[str, Any]]]
) -> Path:
    """mAP vs epoch, queries spent vs epoch and mAP vs queries spent, one line per run.

    Args:
        path: the PNG file to write.
        title: the figure title.
        runs: ``{run label: metrics.jsonl rows}``; rows need ``epoch``; ``mAP`` (percent) only on evaluated
            epochs; ``queries_spent`` when logged.

    Returns:
        ``path``.
    """
    fig = Figure(figsize=(15, 4.2))
    ax_map, ax_queries, ax_cost = fig.subplots(1, 3)
    for label, rows in runs.items():
        evaluated = [r for r in rows if r.get("mAP") is not None and r.get("epoch") is not None]
        ax_map.plot([r["epoch"] for r in evaluated], [r["mAP"] for r in evaluated], marker="o", label=label)
        logged = [r for r in rows if r.get("queries_spent") is not None and r.get("epoch") is not None]
        ax_queries.plot([r["epoch"] for r in logged], [r["queries_spent"] for r in logged], label=label)
        costed = [r for r in evaluated if r.get("queries_spent") is not None]
        ax_cost.plot(
            [r["queries_spent"] for r in costed], [r["mAP"] for r in costed], marker="o", label=label
        )
    for ax, xlabel, ylabel in (
        (ax_map, "epoch", "mAP (%)"),
        (ax_queries, "epoch", "pair queries spent"),
        (ax_cost, "pair queries spent", "mAP (%)"),
    ):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if runs:
        ax_cost.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    return _save(fig, path)
