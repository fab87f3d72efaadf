"""Reproduced runs against the paper: read ``results/runs``, aggregate over seeds, compare, write tables.

Inputs are the run directories of the run contract (``results/runs/<dataset>/<protocol>/<run-id>/`` with
``config.json``, ``final.json``, ``metrics.jsonl``, ``env.json``) and the paper tables of
:mod:`harness.paper`. Runs are grouped by data set (and generated layout), protocol and its version, variant
and backbone; a group's numbers are the mean and the sample standard deviation over its complete runs (one a
seed). Only real data sets are compared with reference numbers; generated data never is.

Runs are never pooled across code or hardware: the runs of one context (data set, layout, protocol, version,
backbone) form *sets* by git commit, machine (CPU and GPU model) and world size, and only the newest complete
set of a context is aggregated (:func:`split_run_sets`); the others are listed, not used. Variants of the used
set are compared with one another as paired differences over the seeds both ran (:mod:`harness.stats`).

``python -m harness.compare [--results DIR]`` writes the tables as CSV (raw numbers) and LaTeX (formatted) to
``results/tables/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from harness.paper import PAPER_DIR, load_tables
from harness.protocols import ProtocolError, parse_variant
from harness.stats import PairedComparison, mean_std, paired_comparison
from harness.tables import Column, render

__all__ = [
    "COMPARED_METRICS",
    "ContextKey",
    "RunSet",
    "SetKey",
    "fmt_p",
    "fmt_paired",
    "machine_name",
    "PAIRED_METRICS",
    "pair_runs",
    "paired_records",
    "seed_values",
    "split_run_sets",
    "training_bands",
    "NA_PAPER",
    "PAPER_BN_BATCH",
    "RUN_METRICS",
    "REAL_DATASETS",
    "TOLERANCE",
    "GroupKey",
    "Run",
    "Summary",
    "ablation_records",
    "comparison_records",
    "cost_curve_points",
    "cost_records",
    "fmt_diff",
    "fmt_int",
    "fmt_mean_std",
    "fmt_paper",
    "group_runs",
    "load_paper_tables",
    "load_runs",
    "main",
    "reproduced_records",
    "summarise",
    "bound_references",
    "dataset_key",
    "fmt_num",
    "fmt_share",
    "group_stats",
    "spal_reference",
    "verdict",
    "write_tables",
]

logger = logging.getLogger(__name__)

#: What every comparison cell says when the paper's value is null. Never replaced by a guess.
NA_PAPER = "n/a (paper value not transcribed)"

#: Data sets whose runs are compared with reference numbers (generated data never is).
REAL_DATASETS: tuple[str, ...] = ("market1501", "msmt17")

#: Verdict tolerance in percentage points: identical settings vary by about +-1 mAP from run to run (SpCL
#: issues #6, #14) and two evaluators on the same features differ by up to 1 mAP (shared/paper_results.md).
TOLERANCE = 2.0

#: Per-run numbers aggregated over seeds (final.json keys).
RUN_METRICS: tuple[str, ...] = (
    "mAP",
    "mINP",
    "rank1",
    "rank5",
    "rank10",
    "queries_spent",
    "budget",
    "pairs_known",
    "num_train_images",
    "best_mAP_on_test",
    "wall_time_s",
)
#: Metrics compared with reference numbers.
COMPARED_METRICS: tuple[str, ...] = ("mAP", "rank1", "rank5", "rank10")
#: Metrics of the paired comparisons (variant against variant over the same seeds).
PAIRED_METRICS: tuple[str, ...] = ("mAP", "rank1")
#: The BatchNorm batch of the paper's layout (4 GPUs x 16 images).
PAPER_BN_BATCH = 16

# Paper tables searched for a harness variant's row, in order of precedence (bounds are separate references).
_SPAL_TABLES = ("spal_main", "spal_ablation", "spal_unsupervised_supervised")
_SWEEP_KEYS = {"budget", "selection"}


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (``None`` below 2 values) and count of a metric over seeds."""

    mean: float | None
    std: float | None
    n: int


class GroupKey(NamedTuple):
    """What makes runs repeats of one another (they differ only by seed)."""

    dataset: str
    layout: str | None
    protocol: str
    version: int | None
    variant: str
    arch: str | None


class ContextKey(NamedTuple):
    """Runs whose numbers may be set side by side: same data, protocol (and version) and backbone."""

    dataset: str
    layout: str | None
    protocol: str
    version: int | None
    arch: str | None


class SetKey(NamedTuple):
    """What must be equal for runs to be aggregated or paired: the code, the hardware and the process layout.

    ``machine`` is the CPU model, with the GPU model after a ``+`` when there is one (see :func:`machine_name`).
    """

    commit: str | None
    machine: str
    world_size: int | None


def machine_name(env: Mapping[str, Any] | None) -> str:
    """The hardware a run's numbers depend on, from its ``env.json``: floating-point kernels differ by CPU model
    (issue 12: the same commit gives 22.96 mAP on Intel and 31.24 on AMD) and by GPU model."""
    env = env or {}
    cpu = env.get("cpu") or "unknown CPU"
    gpu = env.get("gpu_name")
    return f"{cpu} + {gpu}" if gpu else cpu


@dataclass(frozen=True)
class Run:
    """One run directory, as read from disk. ``final`` is ``None`` for an unfinished run.

    ``recorded_at`` is when the run was made: ``env.json``'s ``date``, else (older runs) the modification time
    of ``final.json`` or ``config.json``.
    """

    path: Path
    run_id: str
    dataset: str
    layout: str | None
    protocol: str
    version: int | None
    variant: str
    seed: int | None
    arch: str | None
    config: dict[str, Any]
    final: dict[str, Any] | None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, Any] | None = None
    recorded_at: datetime | None = None

    @property
    def complete(self) -> bool:
        return self.final is not None

    @property
    def key(self) -> GroupKey:
        return GroupKey(self.dataset, self.layout, self.protocol, self.version, self.variant, self.arch)

    @property
    def context(self) -> ContextKey:
        return ContextKey(self.dataset, self.layout, self.protocol, self.version, self.arch)

    @property
    def set_key(self) -> SetKey:
        env = self.env or {}
        final = self.final or {}
        world = self.config.get("world_size", final.get("world_size"))
        return SetKey(env.get("git_commit") or final.get("git_commit"), machine_name(env), world)

    @property
    def train(self) -> dict[str, Any]:
        return self.config.get("train") or {}

    @property
    def bn_batch(self) -> float | None:
        """Images BatchNorm normalises together: global batch / (processes x BN groups a process)."""
        batch = self.train.get("batch_size")
        world = self.config.get("world_size") or 1
        groups = self.config.get("bn_groups") or self.train.get("bn_groups") or 1
        return batch / (world * groups) if batch else None


def summarise(values: Iterable[float | None]) -> Summary:
    """Mean and sample standard deviation (ddof 1) of the values that are not ``None`` or NaN."""
    kept = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not kept:
        return Summary(None, None, 0)
    mean = sum(kept) / len(kept)
    std = math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - 1)) if len(kept) > 1 else None
    return Summary(mean, std, len(kept))


def dataset_key(dataset: str, layout: str | None) -> str:
    """File-name key of a data set: ``market1501``, ``msmt17``, or ``synthetic-<layout>``."""
    return f"{dataset}-{layout}" if dataset not in REAL_DATASETS and layout else dataset


_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class RunSet:
    """The runs of one context made by one commit on one machine with one world size."""

    context: ContextKey
    key: SetKey
    runs: tuple[Run, ...]

    @property
    def n_complete(self) -> int:
        return sum(r.complete for r in self.runs)

    @property
    def complete(self) -> bool:
        """Every run of the set finished (a set still running, or with a crashed run, is not complete)."""
        return self.n_complete == len(self.runs)

    @property
    def recorded_at(self) -> datetime:
        """When its newest run was made."""
        return max((r.recorded_at or _EPOCH for r in self.runs), default=_EPOCH)

    @property
    def dirty(self) -> bool:
        """Some run recorded uncommitted source changes: the commit alone does not name its code."""
        return any((r.env or {}).get("git_dirty") for r in self.runs)


def split_run_sets(runs: Iterable[Run]) -> tuple[dict[ContextKey, RunSet], list[tuple[RunSet, str]]]:
    """The set each context's numbers come from, and every other set with the reason it is not used.

    The newest complete set of a context wins (newest by its newest run's ``recorded_at``). When no set of a
    context is complete, the newest set with a finished run is used (the report says it is incomplete) rather
    than showing nothing; a set without a finished run is never used.

    Returns:
        ``(used, not_used)``: ``used`` maps a context to its set; ``not_used`` holds ``(set, reason)``.
    """
    by_set: dict[tuple[ContextKey, SetKey], list[Run]] = {}
    for run in runs:
        by_set.setdefault((run.context, run.set_key), []).append(run)
    sets: dict[ContextKey, list[RunSet]] = {}
    for (context, key), members in by_set.items():
        sets.setdefault(context, []).append(RunSet(context, key, tuple(members)))
    used: dict[ContextKey, RunSet] = {}
    not_used: list[tuple[RunSet, str]] = []
    for context in sorted(sets, key=lambda c: tuple(map(str, c))):
        # Newest first; equal times fall back to the key so that the choice does not depend on disk order.
        candidates = sorted(sets[context], key=lambda s: (s.recorded_at, tuple(map(str, s.key))), reverse=True)
        chosen = next((s for s in candidates if s.complete), None) or next(
            (s for s in candidates if s.n_complete), None
        )
        if chosen is not None:
            used[context] = chosen
        for run_set in candidates:
            if run_set is chosen:
                continue
            if not run_set.n_complete:
                reason = "no finished run"
            elif not run_set.complete:
                reason = f"incomplete ({run_set.n_complete} of {len(run_set.runs)} runs finished)"
            else:
                reason = "older than the set used"
            not_used.append((run_set, reason))
    return used, not_used


# ----------------------------------------------------------------------------------------------- loading


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        problems.append(f"{path}: unreadable ({err})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: not a JSON object")
        return None
    return data


def _read_jsonl(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            # A run killed mid-write leaves a partial last line; keep the epochs before it.
            problems.append(f"{path}:{number}: unreadable line skipped ({err})")
    return rows


def _recorded_at(run_dir: Path, env: Mapping[str, Any] | None, problems: list[str]) -> datetime:
    """``env.json``'s ``date`` (ISO 8601), else the newest of ``final.json`` / ``config.json``'s mtime."""
    date = (env or {}).get("date")
    if date:
        try:
            stamp = datetime.fromisoformat(str(date))
        except ValueError:
            problems.append(f"{run_dir / 'env.json'}: date {date!r} is not ISO 8601; file time used instead")
        else:
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    files = [p for p in (run_dir / "final.json", run_dir / "config.json") if p.is_file()]
    return datetime.fromtimestamp(max(p.stat().st_mtime for p in files), tz=timezone.utc)


def load_runs(results_dir: Path | str) -> tuple[list[Run], list[str]]:
    """Read every run directory under ``<results_dir>/runs/<dataset>/<protocol>/<run-id>/``.

    Returns:
        ``(runs, problems)``: runs sorted by path; ``problems`` names each directory or file that could not be
        read (missing or broken ``config.json``, unreadable ``final.json`` or lines of ``metrics.jsonl``), so
        that the report can list them rather than drop them silently.
    """
    runs: list[Run] = []
    problems: list[str] = []
    root = Path(results_dir) / "runs"
    for run_dir in sorted(p for p in root.glob("*/*/*") if p.is_dir()):
        config_path = run_dir / "config.json"
        if not config_path.is_file():
            problems.append(f"{run_dir}: no config.json (not a run directory, or it never started)")
            continue
        config = _read_json(config_path, problems)
        if config is None:
            continue
        final_path = run_dir / "final.json"
        final = _read_json(final_path, problems) if final_path.is_file() else None
        env_path = run_dir / "env.json"
        env = _read_json(env_path, problems) if env_path.is_file() else None
        train = config.get("train") or {}
        dataset = config.get("dataset") or run_dir.parts[-3]
        recorded_at = _recorded_at(run_dir, env, problems)
        runs.append(
            Run(
                path=run_dir,
                run_id=str(config.get("run_id") or run_dir.name),
                dataset=dataset,
                layout=train.get("synthetic_layout") if dataset not in REAL_DATASETS else None,
                protocol=str(config.get("protocol") or run_dir.parts[-2]),
                version=config.get("protocol_version"),
                variant=str(config.get("variant") or "full"),
                seed=config.get("seed", train.get("seed")),
                arch=train.get("arch"),
                config=config,
                final=final,
                metrics=_read_jsonl(run_dir / "metrics.jsonl", problems),
                env=env,
                recorded_at=recorded_at,
            )
        )
    return runs, problems


def load_paper_tables(results_dir: Path | str) -> dict[str, dict[str, Any]]:
    """The paper tables of ``<results_dir>/paper`` when that folder exists, else the project's own."""
    folder = Path(results_dir) / "paper"
    return load_tables(folder if folder.is_dir() else PAPER_DIR)


def group_runs(runs: Iterable[Run]) -> dict[GroupKey, list[Run]]:
    """Complete runs of each context's used set (:func:`split_run_sets`) grouped by :class:`GroupKey`
    (sorted keys, runs by seed), so that no group mixes commits, machines or world sizes. A seed run twice in
    the set counts once: its newest run."""
    used, _ = split_run_sets(runs)
    newest: dict[tuple[GroupKey, int | None], Run] = {}
    for run_set in used.values():
        for run in run_set.runs:
            if not run.complete:
                continue
            slot = (run.key, run.seed)
            if slot not in newest or (run.recorded_at or _EPOCH) > (newest[slot].recorded_at or _EPOCH):
                newest[slot] = run
    groups: dict[GroupKey, list[Run]] = {}
    for run in newest.values():
        groups.setdefault(run.key, []).append(run)
    return {
        key: sorted(groups[key], key=lambda r: (r.seed is None, r.seed or 0, r.run_id))
        for key in sorted(groups, key=lambda k: tuple(str(x) for x in k))
    }


def group_stats(runs: Sequence[Run]) -> dict[str, Summary]:
    """:func:`summarise` of every :data:`RUN_METRICS` key over the runs' ``final.json``."""
    return {m: summarise((r.final or {}).get(m) for r in runs) for m in RUN_METRICS}


# --------------------------------------------------------------------------------------------- formatting


def fmt_num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def fmt_int(value: float | None) -> str:
    return "n/a" if value is None else f"{round(value):,}"


def fmt_mean_std(summary: Summary, digits: int = 2, integer: bool = False) -> str:
    """``"mean ± std"`` (``"mean (n=1)"`` for one run, ``"no runs"`` for none)."""
    if summary.mean is None:
        return "no runs"
    fmt = fmt_int if integer else (lambda v: fmt_num(v, digits))
    if summary.std is None:
        return f"{fmt(summary.mean)} (n=1)"
    return f"{fmt(summary.mean)} ± {fmt(summary.std)}"


def fmt_paired(mean: float | None, low: float | None, high: float | None, digits: int = 2) -> str:
    """A paired mean difference with its interval, ``"+1.23 [-0.50, +2.96]"``; ``"n/a"`` without a mean, and
    ``"+1.23 (1 seed: no interval)"`` when the interval is undefined."""
    if mean is None:
        return "n/a"
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{mean:+.{digits}f} (1 seed: no interval)"
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def fmt_p(value: float | None) -> str:
    """A p-value to three decimals (``"< 0.001"`` below that), ``"n/a"`` when undefined."""
    if value is None or math.isnan(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def fmt_paper(value: float | None) -> str:
    """A reference value exactly as written in its file, or :data:`NA_PAPER`."""
    return NA_PAPER if value is None else str(value)


def fmt_diff(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def fmt_share(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.3g}%"


def verdict(reproduced: float | None, reference: float | None, tolerance: float = TOLERANCE) -> str:
    """The comparison verdict of a reproduced mean against a reference value (percentage points)."""
    if reference is None:
        return NA_PAPER
    if reproduced is None:
        return "n/a (no reproduced value)"
    difference = reproduced - reference
    if abs(difference) <= tolerance:
        return f"agrees (within ±{tolerance:g})"
    return f"{'lower' if difference < 0 else 'higher'} by more than {tolerance:g}"


# ------------------------------------------------------------------------------------------ references


def _row_label(table: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    return f"{table['table']}.json: {row['method']}"


def _matching_rows(table: Mapping[str, Any], variant: str, arch: str | None) -> list[dict[str, Any]]:
    return [
        row
        for row in table["rows"]
        if row.get("variant") == variant and (row.get("arch") is None or arch is None or row["arch"] == arch)
    ]


def spal_reference(
    tables: Mapping[str, Mapping[str, Any]], variant: str, arch: str | None, dataset: str, metric: str
) -> tuple[float | None, str] | None:
    """The paper's value for a harness variant: the first SPAL table row (spal_main, then spal_ablation, then
    spal_unsupervised_supervised) with a number for it, else the first matching row (value ``None``).

    Returns:
        ``(value, "<table>.json: <method>")`` or ``None`` when no SPAL table has a row for the variant.
    """
    first: tuple[float | None, str] | None = None
    for name in _SPAL_TABLES:
        table = tables.get(name)
        if table is None or dataset not in table["datasets"] or metric not in table["metrics"]:
            continue
        for row in _matching_rows(table, variant, arch):
            value = row[dataset][metric]
            if value is not None:
                return value, _row_label(table, row)
            first = first or (None, _row_label(table, row))
    return first


def bound_references(
    tables: Mapping[str, Mapping[str, Any]], variant: str, arch: str | None, dataset: str
) -> list[dict[str, Any]]:
    """The bound rows (``bounds.json``) that a harness variant reproduces (e.g. SpCL for ``budget=0``)."""
    table = tables.get("bounds")
    if table is None or dataset not in table["datasets"]:
        return []
    return _matching_rows(table, variant, arch)


# -------------------------------------------------------------------------------------------- records


def reproduced_records(groups: Mapping[GroupKey, Sequence[Run]]) -> list[dict[str, Any]]:
    """One record a group: its key, seeds, run ids, BN batch and mean/std of every :data:`RUN_METRICS` key."""
    records = []
    for key, runs in groups.items():
        stats = group_stats(runs)
        bn = sorted({r.bn_batch for r in runs if r.bn_batch is not None})
        record: dict[str, Any] = {
            **key._asdict(),
            "n_runs": len(runs),
            "seeds": [r.seed for r in runs],
            "run_ids": [r.run_id for r in runs],
            "bn_batch": bn,
            "synthetic_size": sorted({str((r.final or {}).get("synthetic_size")) for r in runs}),
        }
        for metric, summary in stats.items():
            record[f"{metric}_mean"] = summary.mean
            record[f"{metric}_std"] = summary.std
        records.append(record)
    return records


def comparison_records(
    groups: Mapping[GroupKey, Sequence[Run]],
    tables: Mapping[str, Mapping[str, Any]],
    tolerance: float = TOLERANCE,
) -> list[dict[str, Any]]:
    """Reproduced vs reference, one record per (real-data group, reference row, metric).

    A group is compared with the SPAL paper's row for its variant (see :func:`spal_reference`) and with every
    bound row naming that variant. ``reference_value`` is ``None`` (verdict :data:`NA_PAPER`) when the paper's
    value is not transcribed.
    """
    records = []
    for key, runs in groups.items():
        if key.dataset not in REAL_DATASETS:
            continue
        stats = group_stats(runs)
        references: list[tuple[str, dict[str, tuple[float | None, str] | None]]] = []
        spal = {m: spal_reference(tables, key.variant, key.arch, key.dataset, m) for m in COMPARED_METRICS}
        if any(spal.values()):
            references.append(("paper", spal))
        for row in bound_references(tables, key.variant, key.arch, key.dataset):
            label = f"bounds.json: {row['method']} ({row['backbone']}), {row['source']}"
            references.append(("bound", {m: (row[key.dataset].get(m), label) for m in row[key.dataset]}))
        for kind, refs in references:
            for metric in COMPARED_METRICS:
                ref = refs.get(metric)
                if ref is None:
                    continue
                value, label = ref
                summary = stats[metric]
                diff = None if value is None or summary.mean is None else summary.mean - value
                text = verdict(summary.mean, value, tolerance)
                if value is not None and key.protocol != "paper":
                    text += f"; protocol {key.protocol} differs from the paper's settings"
                records.append(
                    {
                        **key._asdict(),
                        "metric": metric,
                        "reproduced_mean": summary.mean,
                        "reproduced_std": summary.std,
                        "n_runs": summary.n,
                        "reference_kind": kind,
                        "reference": label,
                        "reference_value": value,
                        "difference": diff,
                        "verdict": text,
                        "run_ids": [r.run_id for r in runs],
                    }
                )
    return records


def cost_records(
    groups: Mapping[GroupKey, Sequence[Run]], tables: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Annotation cost a group: n, budget, queries spent, share of 2n and of all n(n-1)/2 pairs, pairs known,
    and the paper's query count for the variant (real data only; ``None`` when not transcribed)."""
    records = []
    for key, runs in groups.items():
        stats = group_stats(runs)
        n = stats["num_train_images"].mean or (runs[0].config.get("num_train_images") or None)
        queries = stats["queries_spent"].mean
        paper = None
        paper_label = None
        if key.dataset in REAL_DATASETS:
            ref = spal_reference(tables, key.variant, key.arch, key.dataset, "queries")
            if ref is not None:
                paper, paper_label = ref
        records.append(
            {
                **key._asdict(),
                "budget_setting": sorted({str(r.train.get("budget")) for r in runs}),
                "n": n,
                "budget": stats["budget"].mean,
                "queries_mean": queries,
                "queries_std": stats["queries_spent"].std,
                "share_of_2n": queries / (2 * n) if queries is not None and n else None,
                "share_of_pairs": queries / (n * (n - 1) / 2) if queries is not None and n and n > 1 else None,
                "pairs_known_mean": stats["pairs_known"].mean,
                "paper_queries": paper,
                "paper_reference": paper_label,
                "run_ids": [r.run_id for r in runs],
            }
        )
    return records


def _is_sweep_variant(variant: str) -> bool:
    try:
        keys = set(parse_variant(variant))
    except ProtocolError:
        return False
    return keys <= _SWEEP_KEYS


def ablation_records(
    groups: Mapping[GroupKey, Sequence[Run]],
    tables: Mapping[str, Mapping[str, Any]],
    dataset: str,
    layout: str | None = None,
) -> list[dict[str, Any]]:
    """The ablation of one data set: every non-budget variant of every protocol with runs, compared with
    ``full`` of the same protocol, version and backbone as a paired difference ``variant - full`` over the
    seeds both ran (``<metric>_delta`` with its 95 % interval ``<metric>_low`` / ``<metric>_high`` and the
    paired t-test's ``<metric>_p``; the verdict on mAP in words); for real data also the paper's ablation
    rows (with ``n_runs`` 0 where no run exists).
    """
    selected = {
        k: v for k, v in groups.items() if k.dataset == dataset and k.layout == layout and "budget=" not in k.variant
    }
    records = []
    paper_table = tables.get("spal_ablation") if dataset in REAL_DATASETS else None
    contexts = sorted({(k.protocol, k.version, k.arch) for k in selected}, key=lambda c: tuple(map(str, c)))
    if not contexts and paper_table is not None:
        # No run yet: still list the paper's ablation rows, with no reproduced numbers.
        contexts = [("paper", None, None)]
    for protocol, version, arch in contexts:
        variants = [k for k in selected if (k.protocol, k.version, k.arch) == (protocol, version, arch)]
        names = [k.variant for k in variants]
        if paper_table is not None:
            names += [r["variant"] for r in _paper_ablation_rows(paper_table, arch) if r["variant"] not in names]
        names.sort(key=lambda v: (v != "full", v))
        full_runs = selected.get(GroupKey(dataset, layout, protocol, version, "full", arch), [])
        for name in names:
            key = GroupKey(dataset, layout, protocol, version, name, arch)
            runs = selected.get(key, [])
            stats = group_stats(runs)
            record: dict[str, Any] = {**key._asdict(), "n_runs": stats["mAP"].n}
            paired: dict[str, PairedComparison | None] = {}
            for metric in PAIRED_METRICS:
                record[f"{metric}_mean"] = stats[metric].mean
                record[f"{metric}_std"] = stats[metric].std
                paired[metric] = pair_runs(runs, full_runs, metric) if name != "full" else None
                result = paired[metric]
                record[f"{metric}_delta"] = result.mean if result else None
                record[f"{metric}_low"] = result.low if result else None
                record[f"{metric}_high"] = result.high if result else None
                record[f"{metric}_p"] = result.p_value if result else None
                if dataset in REAL_DATASETS:
                    ref = spal_reference(tables, name, arch, dataset, metric)
                    record[f"paper_{metric}"] = ref[0] if ref else None
            record["queries_mean"] = stats["queries_spent"].mean if "queries_spent" in stats else None
            record["verdict"] = _paired_verdict(name, "full", runs, full_runs, paired["mAP"])
            record["run_ids"] = [r.run_id for r in runs]
            records.append(record)
    return records


def _paired_verdict(
    a: str, b: str, a_runs: Sequence[Run], b_runs: Sequence[Run], result: PairedComparison | None
) -> str:
    if a == b:
        return "-"
    if not a_runs:
        return "no runs"
    if not b_runs:
        return f"cannot be compared: no `{b}` runs in this set"
    if result is None:
        return f"cannot be compared: no seed in common with `{b}`"
    return result.verdict(a, b)


def seed_values(runs: Iterable[Run], metric: str) -> dict[int, float]:
    """``{seed: final.json[metric]}`` of the runs that have both (a run without a seed cannot be paired)."""
    return {
        int(r.seed): float(r.final[metric])
        for r in runs
        if r.seed is not None and r.final is not None and r.final.get(metric) is not None
    }


def pair_runs(a_runs: Iterable[Run], b_runs: Iterable[Run], metric: str) -> PairedComparison | None:
    """:func:`harness.stats.paired_comparison` of ``a - b`` on ``metric``; ``None`` when no seed is shared."""
    a, b = seed_values(a_runs, metric), seed_values(b_runs, metric)
    return paired_comparison(a, b) if set(a) & set(b) else None


def _budget_order(budget: str) -> tuple[int, float, str]:
    """Budgets as the sweep writes them ("0", "0.25n", "2n", or a number of queries) in increasing order."""
    text = budget.strip()
    number = text[:-1] if text.endswith("n") else text
    try:
        return (0 if text.endswith("n") or number == "0" else 1, float(number), text)
    except ValueError:  # not a budget the sweep writes: after the others, by name
        return (2, 0.0, text)


def _comparison_plan(variants: Mapping[str, Sequence[Run]]) -> list[tuple[str, str, str | None, str | None, str]]:
    """``(kind, title, a, b, what is missing)`` of every comparison a context's variants call for."""
    plan: list[tuple[str, str, str | None, str | None, str]] = [
        ("spal-vs-budget-0", "SPAL (full) vs budget 0", "full", "budget=0", "")
    ]
    sweep: dict[tuple[str, str], str] = {}
    for name, runs in variants.items():
        if _is_sweep_variant(name) and runs:
            train = runs[0].train
            sweep[(str(train.get("budget")), str(train.get("selection", "dus")))] = name
    # At budget 0 nothing is selected, so the selection strategy cannot matter (the sweep runs budget 0 once).
    budgets = sorted({budget for budget, _ in sweep if _budget_order(budget)[1] != 0}, key=_budget_order)
    for budget in budgets:
        dus, rnd = sweep.get((budget, "dus")), sweep.get((budget, "random"))
        missing = "DUS" if dus is None else "random-selection" if rnd is None else ""
        plan.append(("dus-vs-random", f"DUS vs random at budget {budget}", dus, rnd, missing))
    for name in sorted(v for v in variants if "budget=" not in v and v != "full"):
        plan.append(("ablation", f"{name} vs full", name, "full", ""))
    return plan


def paired_records(groups: Mapping[GroupKey, Sequence[Run]]) -> list[dict[str, Any]]:
    """Every paired comparison the runs allow, per context (data set, layout, protocol, version, backbone):
    SPAL (``full``) vs ``budget=0``, DUS vs random selection at each budget of the sweep, and each ablation
    variant vs ``full``; one record a comparison and metric (:data:`PAIRED_METRICS`), ``a - b`` over the
    seeds both ran.

    A comparison that cannot be made (one side has no runs in the set, or no seed in common) gives one record
    with ``metric`` ``None`` and the reason in ``note``.
    """
    by_context: dict[ContextKey, dict[str, Sequence[Run]]] = {}
    for key, runs in groups.items():
        context = ContextKey(key.dataset, key.layout, key.protocol, key.version, key.arch)
        by_context.setdefault(context, {})[key.variant] = runs
    records = []
    empty = {f: None for f in ("metric", "n", "seeds", "mean", "low", "high", "p_value", "verdict")}
    for context in sorted(by_context, key=lambda c: tuple(map(str, c))):
        variants = by_context[context]
        for kind, title, a, b, missing in _comparison_plan(variants):
            a_runs = variants.get(a, []) if a else []
            b_runs = variants.get(b, []) if b else []
            base = {**context._asdict(), "kind": kind, "comparison": title, "a": a, "b": b}
            base |= {"a_run_ids": [r.run_id for r in a_runs], "b_run_ids": [r.run_id for r in b_runs]}
            absent = missing or next((f"`{v}`" for v, runs in ((a, a_runs), (b, b_runs)) if not runs), "")
            if absent:
                records.append({**base, **empty, "note": f"cannot be compared: no {absent} runs in this set"})
                continue
            results = {m: pair_runs(a_runs, b_runs, m) for m in PAIRED_METRICS}
            if all(r is None for r in results.values()):
                records.append({**base, **empty, "note": "cannot be compared: no seed in common"})
                continue
            for metric, result in results.items():
                if result is None:
                    continue
                records.append(
                    {
                        **base,
                        "metric": metric,
                        "n": result.n,
                        "seeds": list(result.seeds),
                        "mean": result.mean,
                        "low": result.low,
                        "high": result.high,
                        "p_value": result.p_value,
                        "verdict": result.verdict(str(a), str(b)),
                        "note": None,
                    }
                )
    return records


def training_bands(runs: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, list[dict[str, float]]]:
    """A variant's training curves as mean and sample std over its runs (seeds), point by point.

    Args:
        runs: each run's ``metrics.jsonl`` rows (``epoch``; ``mAP`` on evaluated epochs; ``queries_spent``).

    Returns:
        ``{"mAP": [...], "queries_spent": [...], "cost": [...]}``, each a list of ``{"x", "mean", "std", "n"}``
        sorted by ``x``: mAP and queries spent against the epoch, and mAP against the mean queries spent at
        the evaluated epochs. A point averages the runs that logged it (``std`` is NaN for one run); a run
        that logged an epoch twice (resumed) counts its last row.
    """
    per_epoch: dict[str, dict[int, list[Mapping[str, Any]]]] = {"mAP": {}, "queries_spent": {}, "cost": {}}
    for rows in runs:
        last = {r["epoch"]: r for r in rows if r.get("epoch") is not None}
        for epoch, row in last.items():
            has_map, has_queries = row.get("mAP") is not None, row.get("queries_spent") is not None
            for name, wanted in (("mAP", has_map), ("queries_spent", has_queries), ("cost", has_map and has_queries)):
                if wanted:
                    per_epoch[name].setdefault(epoch, []).append(row)
    bands: dict[str, list[dict[str, float]]] = {}
    for name, epochs in per_epoch.items():
        points = []
        for epoch, rows in epochs.items():
            y_key = "queries_spent" if name == "queries_spent" else "mAP"
            mean, std = mean_std([float(r[y_key]) for r in rows])
            x = mean_std([float(r["queries_spent"]) for r in rows])[0] if name == "cost" else float(epoch)
            points.append({"x": x, "mean": mean, "std": std, "n": len(rows)})
        bands[name] = sorted(points, key=lambda p: p["x"])
    return bands


def _paper_ablation_rows(table: Mapping[str, Any], arch: str | None) -> list[dict[str, Any]]:
    return [r for r in table["rows"] if r.get("variant") and (arch is None or r.get("arch") in (None, arch))]


def cost_curve_points(
    groups: Mapping[GroupKey, Sequence[Run]], dataset: str, layout: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Points of the cost curve of one data set: ``{line label: [point, ...]}`` sorted by queries spent.

    A line is a selection strategy, with the protocol and its version in the label when several have runs (one
    version's points never join another's line). Its points are the groups whose variant changes only the budget
    and the selection (``full`` included). A point is ``{"budget", "queries": Summary, "mAP": Summary, "rank1":
    Summary, "run_ids"}``.
    """
    selected = {
        k: v for k, v in groups.items() if k.dataset == dataset and k.layout == layout and _is_sweep_variant(k.variant)
    }
    protocols = {(k.protocol, k.version) for k in selected}
    lines: dict[str, list[dict[str, Any]]] = {}
    for key, runs in selected.items():
        selection = runs[0].train.get("selection", "dus")
        label = selection if len(protocols) == 1 else f"{selection} ({key.protocol} v{key.version})"
        if key.arch and len({k.arch for k in selected}) > 1:
            label += f" [{key.arch}]"
        stats = group_stats(runs)
        if stats["queries_spent"].mean is None or stats["mAP"].mean is None:
            continue
        lines.setdefault(label, []).append(
            {
                "budget": str(runs[0].train.get("budget")),
                "queries": stats["queries_spent"],
                "mAP": stats["mAP"],
                "rank1": stats["rank1"],
                "run_ids": [r.run_id for r in runs],
            }
        )
    return {label: sorted(points, key=lambda p: p["queries"].mean) for label, points in sorted(lines.items())}


# ---------------------------------------------------------------------------------------- table files


def _protocol(r: Mapping[str, Any]) -> str:
    return f"{r['protocol']} v{r['version']}"


def _dataset(r: Mapping[str, Any]) -> str:
    return dataset_key(r["dataset"], r["layout"])


def _summary(prefix: str, n_key: str = "n_runs", integer: bool = False) -> Callable[[Mapping[str, Any]], str]:
    """The cell ``mean ± std`` of the record's ``<prefix>_mean`` and ``<prefix>_std``."""

    def cell(r: Mapping[str, Any]) -> str:
        n = len(r[n_key]) if isinstance(r[n_key], list) else r[n_key]
        return fmt_mean_std(Summary(r[f"{prefix}_mean"], r[f"{prefix}_std"], n), integer=integer)

    return cell


#: The columns of ``results/tables/comparison.tex``: a reproduced metric against the paper's value.
COMPARISON_COLUMNS = [
    Column("data set", lambda r: r["dataset"]),
    Column("protocol", _protocol),
    Column("variant", lambda r: r["variant"]),
    Column("metric", lambda r: r["metric"]),
    Column("reproduced", _summary("reproduced")),
    Column("reference", lambda r: r["reference"]),
    Column("value", lambda r: fmt_paper(r["reference_value"])),
    Column("difference", lambda r: fmt_diff(r["difference"])),
    Column("verdict", lambda r: r["verdict"]),
]

#: The columns of ``results/tables/reproduced.tex``: every group's metrics over its seeds.
REPRODUCED_COLUMNS = [
    Column("data set", _dataset),
    Column("protocol", _protocol),
    Column("variant", lambda r: r["variant"]),
    Column("arch", lambda r: str(r["arch"])),
    Column("seeds", lambda r: str(r["n_runs"])),
    *(
        Column(label, _summary(m))
        for m, label in (("mAP", "mAP"), ("rank1", "Rank-1"), ("rank5", "Rank-5"), ("rank10", "Rank-10"))
    ),  # fmt: skip
    Column("queries", _summary("queries_spent", integer=True)),
]

#: The columns of ``results/tables/cost.tex``: the queries spent against the budget and the paper's count.
COST_COLUMNS = [
    Column("data set", _dataset),
    Column("protocol", _protocol),
    Column("variant", lambda r: r["variant"]),
    Column("n", lambda r: fmt_int(r["n"])),
    Column("budget", lambda r: fmt_int(r["budget"])),
    Column("queries spent", _summary("queries", n_key="run_ids", integer=True)),
    Column("of 2n", lambda r: fmt_share(r["share_of_2n"])),
    Column("of all pairs", lambda r: fmt_share(r["share_of_pairs"])),
    Column(
        "paper",
        lambda r: fmt_paper(r["paper_queries"]) if r["dataset"] in REAL_DATASETS else "not compared (synthetic)",
    ),
]

#: The columns of ``results/tables/paired.tex``: paired differences over seeds.
PAIRED_COLUMNS = [
    Column("data set", _dataset),
    Column("protocol", _protocol),
    Column("comparison", lambda r: r["comparison"]),
    Column("metric", lambda r: r["metric"] or "-"),
    Column("seeds", lambda r: " ".join(map(str, r["seeds"] or [])) or "-"),
    Column("a - b", lambda r: fmt_paired(r["mean"], r["low"], r["high"])),
    Column("p", lambda r: fmt_p(r["p_value"])),
    Column("verdict", lambda r: r["verdict"] or r["note"]),
]


def _csv_value(value: Any) -> Any:
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "" if value is None else value


def _write_csv(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    columns: list[str] = []
    for record in records:
        columns += [c for c in record if c not in columns]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for record in records:
            writer.writerow({c: _csv_value(record.get(c)) for c in columns})


def write_tables(results_dir: Path | str) -> list[Path]:
    """Write ``results/tables/{reproduced,comparison,cost,paired}.{csv,tex}`` from the runs under ``results_dir``.

    CSV files hold raw numbers (an empty cell = none; an empty file = no runs); LaTeX files hold the
    formatted tables (booktabs).

    Returns:
        the paths written.
    """
    results = Path(results_dir)
    runs, _ = load_runs(results)
    tables = load_paper_tables(results)
    groups = group_runs(runs)
    out = results / "tables"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    builders = {
        "reproduced": (reproduced_records(groups), REPRODUCED_COLUMNS),
        "comparison": (comparison_records(groups, tables), COMPARISON_COLUMNS),
        "cost": (cost_records(groups, tables), COST_COLUMNS),
        "paired": (paired_records(groups), PAIRED_COLUMNS),
    }
    for name, (records, columns) in builders.items():
        csv_path = out / f"{name}.csv"
        _write_csv(csv_path, records)
        tex_path = out / f"{name}.tex"
        if records:
            tex_path.write_text(render(columns, records, "latex_booktabs") + "\n")
        else:
            # tabulate cannot infer a column specification from no rows; an empty tabular would not compile.
            tex_path.write_text(f"% {name}: no complete runs yet\n")
        written += [csv_path, tex_path]
    logger.info("wrote %d table files to %s", len(written), out)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.compare``: write the comparison tables as CSV and LaTeX to ``results/tables/``."""
    parser = argparse.ArgumentParser(prog="python -m harness.compare", description=main.__doc__)
    parser.add_argument("--results", default="results", help="the results folder (default: results)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in write_tables(args.results):
        logger.info("%s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
