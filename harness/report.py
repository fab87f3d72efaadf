"""``results/REPORT.md``: the paper's tables, the known bounds and every reproduced run, side by side.

The report is rebuilt from whatever is under ``results/``: the paper tables (``paper/``), the runs
(``runs/**/config.json``, ``final.json``, ``metrics.jsonl``, ``env.json``) and the benchmarks
(``bench/*.json``). It always shows, for Market-1501 and MSMT17, the paper's rows ("n/a (paper value not
transcribed)" for every null, never a guess), the bounds in percent as written in ``bounds.json`` and the
reproduced numbers (mean ± sample std over seeds) with their difference to the paper and a verdict against
:data:`harness.compare.TOLERANCE`; runs on generated data get their own table and are never compared with the
paper. Every number names its origin: a paper table file and row, a bound's source, or the run ids it was
computed from.

Numbers of one cell always come from one run set (one commit, machine and world size; the newest complete set
of each data set, protocol and backbone, see :func:`harness.compare.split_run_sets`), and the report lists the
sets, used or not, with whether each is committed reference data or a local run. Variants are compared as
paired differences over seeds with a 95 % interval and a p-value (:mod:`harness.stats`).

``python -m harness.report [--results DIR]`` writes ``REPORT.md``, ``figures/*.png`` and ``tables/*``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.bench.headlines import HEADLINE_COLUMNS, headline_of
from harness.compare import (
    NA_PAPER,
    PAPER_BN_BATCH,
    REAL_DATASETS,
    TOLERANCE,
    ContextKey,
    GroupKey,
    Run,
    RunSet,
    Summary,
    ablation_records,
    comparison_records,
    cost_curve_points,
    cost_records,
    dataset_key,
    fmt_diff,
    fmt_int,
    fmt_mean_std,
    fmt_num,
    fmt_p,
    fmt_paired,
    fmt_paper,
    fmt_share,
    group_runs,
    group_stats,
    load_paper_tables,
    load_runs,
    paired_records,
    spal_reference,
    split_run_sets,
    training_bands,
    write_tables,
)
from harness.environment import tracked_files
from harness.plots import plot_cost_curve, plot_training_curves
from harness.tables import Column, render

__all__ = ["build_report", "main", "write_report"]

logger = logging.getLogger(__name__)

METRIC_LABELS = {
    "mAP": "mAP",
    "mINP": "mINP",
    "rank1": "Rank-1",
    "rank5": "Rank-5",
    "rank10": "Rank-10",
    "queries": "queries",
    "cost": "cost",
}
_PAPER_TABLE_ORDER = ("spal_main", "spal_unsupervised_supervised", "spal_ablation")


@dataclass(frozen=True)
class _Inputs:
    """Everything the report is built from, read once."""

    results: Path
    tables: dict[str, dict[str, Any]]
    runs: list[Run]
    problems: list[str]
    groups: dict[GroupKey, list[Run]]
    bench: list[tuple[str, list[dict[str, Any]], dict[str, Any]]]
    used_sets: dict[ContextKey, RunSet]
    not_used_sets: list[tuple[RunSet, str]]
    # Files git tracks under runs/ (committed reference data); None when the folder is not in a checkout.
    tracked: set[Path] | None


# ------------------------------------------------------------------------------------------------ helpers


def _md_table(columns: Sequence[Column], records: Iterable[Mapping[str, Any]]) -> str:
    """A GitHub Markdown table, one row a record, one cell a column (:func:`harness.tables.render`, which also
    renders ``harness.compare``'s LaTeX tables from their columns)."""
    return render(columns, records, "github")


def _dataset_name(tables: Mapping[str, Mapping[str, Any]], dataset: str) -> str:
    for table in tables.values():
        if dataset in table["datasets"]:
            return table["datasets"][dataset]["name"]
    return dataset


def _num_train_images(tables: Mapping[str, Mapping[str, Any]], dataset: str) -> int | None:
    for table in tables.values():
        if dataset in table["datasets"]:
            return table["datasets"][dataset]["num_train_images"]
    return None


def _runs_cell(run_ids: Sequence[str]) -> str:
    return ", ".join(run_ids) if run_ids else "none"


def _protocol_cell(protocol: str, version: int | None) -> str:
    return protocol if version is None else f"{protocol} v{version}"


def _bn_cell(bn_batch: float | None) -> str:
    if bn_batch is None:
        return "n/a"
    text = fmt_num(bn_batch, 0)
    return text if bn_batch == PAPER_BN_BATCH else f"{text} (paper: {PAPER_BN_BATCH})"


def _cost_curve_file(key: str) -> str:
    return f"figures/cost-curve-{key}.png"


def _training_file(key: str, protocol: str) -> str:
    return f"figures/runs-{key}-{protocol}.png"


def _synthetic_layouts(inputs: _Inputs) -> list[str | None]:
    return sorted({r.layout for r in inputs.runs if r.dataset not in REAL_DATASETS}, key=str)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys; lists of scalars are joined; lists of objects are counted."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return {prefix[:-1]: " ".join(map(str, value))}
        return {prefix[:-1]: f"{len(value)} entries"}
    return {prefix[:-1]: value}


def _load_bench(results: Path, problems: list[str]) -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """``(file name, records, file-level scalars)`` per ``bench/*.json``, whatever its layout: a list of
    objects, an object holding lists of objects (each listed object a record), or one object (one record)."""
    out = []
    for path in sorted((results / "bench").glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            problems.append(f"{path}: unreadable ({err})")
            continue
        meta: dict[str, Any] = {}
        records: list[dict[str, Any]] = []
        if isinstance(data, list):
            records = [_flatten(item) for item in data if isinstance(item, dict)]
        elif isinstance(data, dict):
            # The benchmark's headline is the Benchmarks table itself; the details list what it measured.
            data = {k: v for k, v in data.items() if k != "headline"}
            nested = {
                k: v for k, v in data.items() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)
            }
            if nested:
                meta = _flatten({k: v for k, v in data.items() if k not in nested})
                for group, items in nested.items():
                    records += (
                        [{"group": group, **_flatten(item)} for item in items]
                        if len(nested) > 1
                        else [_flatten(item) for item in items]
                    )
            else:
                records = [_flatten(data)]
        out.append((path.name, records, meta))
    return out


def _bench_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _bench_table_columns(keys: Sequence[str]) -> list[Column]:
    """A benchmark table: one column a record key, headed by the key (a missing key leaves its cell empty)."""
    return [Column(key, lambda record, key=key: _bench_cell(record.get(key))) for key in keys]


def _bench_keys(records: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for record in records:
        columns += [c for c in record if c not in columns]

    # Identity first, ratios last: the rest keeps the files' own order.
    def rank(column: str) -> int:
        lowered = column.lower()
        if lowered in ("name", "group", "case", "benchmark"):
            return 0
        if "device" in lowered:
            return 1
        if "ratio" in lowered or "speedup" in lowered:
            return 3
        return 2

    return sorted(columns, key=rank)


# ----------------------------------------------------------------------------------------------- sections


def _header(inputs: _Inputs) -> list[str]:
    complete = sum(r.complete for r in inputs.runs)
    spal_cells = [
        row[d][m]
        for name in _PAPER_TABLE_ORDER
        if name in inputs.tables
        for row in inputs.tables[name]["rows"]
        for d in inputs.tables[name]["datasets"]
        for m in inputs.tables[name]["metrics"]
    ]
    filled = sum(v is not None for v in spal_cells)
    return [
        "# SPAL reproduction report",
        "",
        "Generated by `python -m harness.report` from the files under `results/` (paper tables, runs, "
        "benchmarks); regenerate it instead of editing it.",
        "",
        f"- Runs found: {len(inputs.runs)} ({complete} complete, {len(inputs.runs) - complete} incomplete).",
        f"- SPAL paper values transcribed in `results/paper/`: {filled} of {len(spal_cells)}.",
        "",
        "## How to read this report",
        "",
        "- **Paper**: values from the SPAL paper as stored in `results/paper/<table>.json` (named in each "
        f'table). Every cell whose value is null there reads "{NA_PAPER}"; nothing is estimated.',
        "- **Bounds**: numbers of other projects from `results/paper/bounds.json`, in percent as written "
        "there, each with its source. They are not SPAL numbers: SPAL should land between 'no labels' and "
        "'all labels'.",
        "- **Reproduced**: `final.json` of each run (the final-epoch model, percent), as mean ± sample "
        "standard deviation over the seeds of the run set used (never across commits or machines: see Run "
        "sets); `(n=1)` marks a single run. The best-on-test figure is shown only in "
        "its own labelled column and is never the result. The runs column names the run ids each number "
        "comes from.",
        "- **Paired comparisons**: variant against variant as the mean of per-seed differences with a 95 % "
        "interval and a paired t-test p-value; 'not distinguishable at N seeds' means the interval holds 0.",
        f"- **Verdict**: reproduced mean minus reference, agreeing when within ±{TOLERANCE:g} percentage "
        "points (identical settings vary by about ±1 mAP from run to run, SpCL issues #6 and #14, and two "
        "evaluators differ by up to 1 mAP).",
        "- **GPU layout**: the paper's BatchNorm saw 16 images at a time (4 GPUs x 16). The number of GPUs "
        "moves results by 6-20 mAP (SpCL #11, cluster-contrast-reid #16), so the BN batch of every run is "
        "listed; runs with another BN batch are not expected to agree.",
        "",
    ]


def _text_column(key: str) -> Column:
    """The column ``key`` of a paper-table row, empty where the row has none."""
    return Column(key, lambda row: row.get(key, ""))


def _paper_value_columns(table: Mapping[str, Any], dataset: str) -> list[Column]:
    """One column a metric of a paper table: the row's value on ``dataset`` as written, or :data:`NA_PAPER`."""
    return [Column(METRIC_LABELS[m], lambda row, m=m: fmt_paper(row[dataset][m])) for m in table["metrics"]]


def _paper_table_columns(table: Mapping[str, Any], dataset: str) -> list[Column]:
    """The columns of a SPAL paper table: the method, the descriptions its rows have, its metrics, the source."""
    extra = [k for k in ("backbone", "setting", "variant") if any(k in r for r in table["rows"])]
    untranscribed = f"not transcribed ({table['table']}.json)"
    return [
        Column("method", lambda row: row["method"]),
        *(_text_column(k) for k in extra),
        *_paper_value_columns(table, dataset),
        Column("source", lambda row: row.get("source") or untranscribed),
    ]


def _paper_table_section(table: Mapping[str, Any], dataset: str) -> list[str]:
    return [
        f"### Paper: {table['title']} (`results/paper/{table['table']}.json`)",
        "",
        _md_table(_paper_table_columns(table, dataset), table["rows"]),
        "",
    ]


def _bounds_columns(table: Mapping[str, Any], dataset: str) -> list[Column]:
    """The columns of the bounds table (``bounds.json``): what each row is, its metrics, where it comes from."""
    return [
        _text_column("setting"),
        Column("method", lambda row: row["method"]),
        _text_column("backbone"),
        *_paper_value_columns(table, dataset),
        _text_column("source"),
        _text_column("note"),
    ]


def _bounds_section(tables: Mapping[str, Mapping[str, Any]], dataset: str) -> list[str]:
    table = tables["bounds"]
    return [
        "### Bounds: no labels and all labels (`results/paper/bounds.json`, not SPAL numbers)",
        "",
        _md_table(_bounds_columns(table, dataset), table["rows"]),
        "",
    ]


def _group_records(groups: Mapping[GroupKey, list[Run]]) -> list[dict[str, Any]]:
    """One record a group of runs (the seeds of one variant in the set used): ``{"key", "runs", "stats"}``,
    ``stats`` being :func:`harness.compare.group_stats` of its runs."""
    return [{"key": key, "runs": runs, "stats": group_stats(runs)} for key, runs in groups.items()]


def _group_metric_columns(metrics: Sequence[str]) -> list[Column]:
    """``mean ± std`` over a group's seeds of each of ``metrics`` (``final.json`` keys)."""
    return [Column(METRIC_LABELS[m], lambda group, m=m: fmt_mean_std(group["stats"][m])) for m in metrics]


_GROUP_PROTOCOL = Column("protocol", lambda group: _protocol_cell(group["key"].protocol, group["key"].version))
_GROUP_VARIANT = Column("variant", lambda group: group["key"].variant)
_GROUP_ARCH = Column("arch", lambda group: group["key"].arch or "n/a")
_GROUP_SEEDS = Column("seeds", lambda group: ", ".join(str(run.seed) for run in group["runs"]))
_GROUP_RUNS = Column("runs", lambda group: _runs_cell([run.run_id for run in group["runs"]]))

#: The reproduced table of a real data set: one row a group (see :func:`_group_records`).
_REPRODUCED_COLUMNS = [
    _GROUP_PROTOCOL,
    _GROUP_VARIANT,
    _GROUP_ARCH,
    Column("BN batch", lambda group: ", ".join(sorted({_bn_cell(run.bn_batch) for run in group["runs"]}))),
    _GROUP_SEEDS,
    *_group_metric_columns(("mAP", "rank1", "rank5", "rank10", "mINP")),
    Column("best mAP on test (not the result)", lambda group: fmt_mean_std(group["stats"]["best_mAP_on_test"])),
    _GROUP_RUNS,
]


def _reproduced_section(inputs: _Inputs, dataset: str, name: str) -> list[str]:
    groups = {k: v for k, v in inputs.groups.items() if k.dataset == dataset}
    lines = [f"### Reproduced on {name}", ""]
    if not groups:
        return lines + [f"No complete runs on {name} yet (`make reproduce DATASET={dataset}`).", ""]
    return lines + [_md_table(_REPRODUCED_COLUMNS, _group_records(groups)), ""]


_RECORD_PROTOCOL = Column("protocol", lambda r: _protocol_cell(r["protocol"], r["version"]))
_RECORD_VARIANT = Column("variant", lambda r: r["variant"])
_RECORD_RUNS = Column("runs", lambda r: _runs_cell(r["run_ids"]))

#: The reproduced-vs-paper table: one row a :func:`harness.compare.comparison_records` record.
_COMPARISON_COLUMNS = [
    _RECORD_PROTOCOL,
    _RECORD_VARIANT,
    Column("metric", lambda r: METRIC_LABELS[r["metric"]]),
    Column("reproduced", lambda r: fmt_mean_std(Summary(r["reproduced_mean"], r["reproduced_std"], r["n_runs"]))),
    Column("reference", lambda r: r["reference"]),
    Column("reference value", lambda r: fmt_paper(r["reference_value"])),
    Column("difference", lambda r: fmt_diff(r["difference"])),
    Column("verdict", lambda r: r["verdict"]),
    _RECORD_RUNS,
]


def _comparisons_to_come(inputs: _Inputs, dataset: str) -> list[dict[str, Any]]:
    """Comparison records without runs: full SPAL's paper values on ``dataset``, which runs will be held to."""
    records = []
    for metric in ("mAP", "rank1", "rank5", "rank10"):
        ref = spal_reference(inputs.tables, "full", "resnet50", dataset, metric)
        value, label = ref if ref else (None, "no paper row")
        records.append(
            {
                "protocol": "paper",
                "version": None,
                "variant": "full",
                "metric": metric,
                "reproduced_mean": None,
                "reproduced_std": None,
                "n_runs": 0,
                "reference": label,
                "reference_value": value,
                "difference": None,
                "verdict": NA_PAPER if value is None else "n/a (no runs)",
                "run_ids": [],
            }
        )
    return records


def _comparison_section(inputs: _Inputs, dataset: str, name: str) -> list[str]:
    records = [r for r in comparison_records(inputs.groups, inputs.tables) if r["dataset"] == dataset]
    # No run yet: the comparison still shows what it will compare against.
    records = records or _comparisons_to_come(inputs, dataset)
    return [
        f"### Reproduced vs paper on {name} (tolerance ±{TOLERANCE:g} points)",
        "",
        _md_table(_COMPARISON_COLUMNS, records),
        "",
    ]


#: The annotation-cost table. The paper's row gives one count as written, a reproduced row a mean over seeds,
#: so each source formats its own cells (:func:`_paper_cost_row`, :func:`_reproduced_cost_row`).
_COST_COLUMNS = [
    Column("source", lambda row: row["source"]),
    Column("n (train images)", lambda row: fmt_int(row["n"])),
    Column("budget", lambda row: row["budget"]),
    Column("queries spent", lambda row: row["queries"]),
    Column("share of the 2n budget", lambda row: row["share_of_2n"]),
    Column("share of all n(n-1)/2 pairs", lambda row: row["share_of_pairs"]),
    Column("pairs known (propagated)", lambda row: row["pairs_known"]),
]


def _paper_share(value: float | None, total: float | None) -> str:
    """The paper's query count as a share of ``total``: :data:`NA_PAPER` without a count, ``n/a`` without n."""
    if value is None:
        return NA_PAPER
    return fmt_share(value / total) if total else "n/a"


def _paper_cost_row(inputs: _Inputs, dataset: str) -> dict[str, Any]:
    """The cost table's row of the paper's full SPAL on ``dataset`` (cells of :data:`_COST_COLUMNS`)."""
    n = _num_train_images(inputs.tables, dataset)
    ref = spal_reference(inputs.tables, "full", "resnet50", dataset, "queries")
    queries, label = ref if ref else (None, "no paper row")
    return {
        "source": f"paper: {label}",
        "n": n,
        "budget": f"2n = {fmt_int(2 * n)}" if n else "2n",
        "queries": fmt_paper(queries),
        "share_of_2n": _paper_share(queries, 2 * n if n else None),
        "share_of_pairs": _paper_share(queries, n * (n - 1) / 2 if n else None),
        "pairs_known": "n/a (not reported)",
    }


def _reproduced_cost_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The cost table's row of a :func:`harness.compare.cost_records` record (cells of :data:`_COST_COLUMNS`)."""
    queries = Summary(record["queries_mean"], record["queries_std"], len(record["run_ids"]))
    return {
        "source": f"reproduced: {_protocol_cell(record['protocol'], record['version'])} / {record['variant']} "
        f"(runs: {_runs_cell(record['run_ids'])})",
        "n": record["n"],
        "budget": f"{', '.join(record['budget_setting'])} = {fmt_int(record['budget'])}",
        "queries": fmt_mean_std(queries, integer=True),
        "share_of_2n": fmt_share(record["share_of_2n"]),
        "share_of_pairs": fmt_share(record["share_of_pairs"]),
        "pairs_known": fmt_int(record["pairs_known_mean"]),
    }


def _cost_section(inputs: _Inputs, dataset: str, name: str) -> list[str]:
    records = [r for r in cost_records(inputs.groups, inputs.tables) if r["dataset"] == dataset]
    rows = [_paper_cost_row(inputs, dataset), *map(_reproduced_cost_row, records)]
    return [
        f"### Annotation cost on {name} (pair queries; one same/different answer = 1)",
        "",
        _md_table(_COST_COLUMNS, rows),
        "",
    ]


def _real_dataset_section(inputs: _Inputs, dataset: str) -> list[str]:
    name = _dataset_name(inputs.tables, dataset)
    lines = [f"## {name}", ""]
    for table_name in _PAPER_TABLE_ORDER:
        if table_name in inputs.tables and dataset in inputs.tables[table_name]["datasets"]:
            lines += _paper_table_section(inputs.tables[table_name], dataset)
    lines += _bounds_section(inputs.tables, dataset)
    lines += _reproduced_section(inputs, dataset, name)
    lines += _comparison_section(inputs, dataset, name)
    lines += _cost_section(inputs, dataset, name)
    return lines


def _synthetic_sizes(group: Mapping[str, Any]) -> str:
    """The generated sizes a group's runs trained on (``final.json``'s ``synthetic_size``), each once."""
    sizes = {str((run.final or {}).get("synthetic_size") or "n/a") for run in group["runs"]}
    return ", ".join(sorted(sizes))


#: The table of runs on generated data: one row a group (see :func:`_group_records`).
_SYNTHETIC_COLUMNS = [
    Column("layout", lambda group: group["key"].layout or "n/a"),
    _GROUP_PROTOCOL,
    _GROUP_VARIANT,
    _GROUP_ARCH,
    Column("size", _synthetic_sizes),
    _GROUP_SEEDS,
    *_group_metric_columns(("mAP", "rank1", "rank5", "rank10")),
    Column("queries spent", lambda group: fmt_mean_std(group["stats"]["queries_spent"], integer=True)),
    Column("budget", lambda group: fmt_int(group["stats"]["budget"].mean)),
    _GROUP_RUNS,
]


def _synthetic_section(inputs: _Inputs) -> list[str]:
    lines = [
        "## Runs on synthetic data (never compared with the paper)",
        "",
        "Generated images check that the pipeline works end to end; their numbers say nothing about the paper's.",
        "",
    ]
    groups = {k: v for k, v in inputs.groups.items() if k.dataset not in REAL_DATASETS}
    if not groups:
        return lines + ["No complete runs on synthetic data yet (`make reproduce DATASET=synthetic`).", ""]
    return lines + [_md_table(_SYNTHETIC_COLUMNS, _group_records(groups)), ""]


def _ablation_metric_columns(metric: str) -> list[Column]:
    """A metric of the ablation table: the variant's ``mean ± std``, its paired difference to full SPAL and
    that difference's p-value (``<metric>_mean`` ... ``<metric>_p`` of an ablation record)."""
    label = METRIC_LABELS[metric]
    return [
        Column(label, lambda r: fmt_mean_std(Summary(r[f"{metric}_mean"], r[f"{metric}_std"], r["n_runs"]))),
        Column(
            f"Δ {label} vs full [95 % interval]",
            lambda r: fmt_paired(r[f"{metric}_delta"], r[f"{metric}_low"], r[f"{metric}_high"]),
        ),
        Column(f"p ({label})", lambda r: fmt_p(r[f"{metric}_p"])),
    ]


def _ablation_columns(real: bool) -> list[Column]:
    """The ablation table, one row a :func:`harness.compare.ablation_records` record; on a real data set
    (``real``) with the paper's ablation values beside."""
    paper = [
        Column("paper mAP (spal_ablation.json)", lambda r: fmt_paper(r["paper_mAP"])),
        Column("paper Rank-1 (spal_ablation.json)", lambda r: fmt_paper(r["paper_rank1"])),
    ]
    return [
        Column("protocol", lambda r: _protocol_cell(r["protocol"], r["version"]) if r["n_runs"] else "-"),
        _RECORD_VARIANT,
        Column("n (seeds)", lambda r: str(r["n_runs"])),
        Column("queries spent", lambda r: fmt_num(r["queries_mean"], 0)),
        *_ablation_metric_columns("mAP"),
        *_ablation_metric_columns("rank1"),
        Column("verdict (mAP)", lambda r: r["verdict"]),
        *(paper if real else []),
        _RECORD_RUNS,
    ]


def _ablation_table(inputs: _Inputs, dataset: str, layout: str | None) -> list[str]:
    records = ablation_records(inputs.groups, inputs.tables, dataset, layout)
    if not records:
        return ["No ablation runs yet.", ""]
    return [_md_table(_ablation_columns(dataset in REAL_DATASETS), records), ""]


def _ablation_section(inputs: _Inputs) -> list[str]:
    lines = [
        "## Ablation",
        "",
        "Each variant against the full method (`full`) of the same protocol, backbone and run set: mean ± std "
        "over seeds of each, and the paired difference `variant - full` over the seeds both ran with its 95 % "
        "interval and paired t-test p-value; the verdict says whether the interval excludes 0. Variant names "
        "are the harness's (`harness/protocols`).",
        "",
    ]
    for dataset in REAL_DATASETS:
        lines += [f"### {_dataset_name(inputs.tables, dataset)}", ""]
        lines += _ablation_table(inputs, dataset, None)
    for layout in _synthetic_layouts(inputs):
        lines += [f"### synthetic ({layout} layout; not compared with the paper)", ""]
        lines += _ablation_table(inputs, "synthetic", layout)
    return lines


def _set_commit_cell(run_set: RunSet) -> str:
    sha = run_set.key.commit
    text = sha[:12] if sha else "unknown"
    return f"{text} (dirty)" if run_set.dirty else text


def _origin(run_set: RunSet, tracked: set[Path] | None) -> str:
    """Committed reference data (every run file tracked by git) or a user's local run (untracked)."""
    if tracked is None:
        return "unknown (results folder not in a git checkout)"
    committed = sum((run.path / "config.json").resolve() in tracked for run in run_set.runs)
    if committed == len(run_set.runs):
        return "committed reference data"
    if committed == 0:
        return "local run (untracked)"
    return f"mixed: {committed} of {len(run_set.runs)} runs committed"


def _set_world_size_cell(run_set: RunSet) -> str:
    world_size = run_set.key.world_size
    return str(world_size if world_size is not None else "n/a")


def _of_set(header: str, cell: Callable[[RunSet], str]) -> Column:
    """A column of the run-set tables read off the set alone."""
    return Column(header, lambda record: cell(record["set"]))


def _run_set_columns(tracked: set[Path] | None, last: str) -> list[Column]:
    """The run-set tables, one row a ``{"set": RunSet, "last": text}`` record: what the set is, then ``last``
    (its state, or why it is not used) under that header; ``tracked`` tells committed runs from local ones."""
    return [
        _of_set("data set", lambda s: dataset_key(s.context.dataset, s.context.layout)),
        _of_set("protocol", lambda s: _protocol_cell(s.context.protocol, s.context.version)),
        _of_set("arch", lambda s: s.context.arch or "n/a"),
        _of_set("git commit", _set_commit_cell),
        _of_set("machine", lambda s: s.key.machine),
        _of_set("world size", _set_world_size_cell),
        _of_set("runs", lambda s: f"{len(s.runs)} ({s.n_complete} finished)"),
        _of_set("newest run (UTC)", lambda s: s.recorded_at.strftime("%Y-%m-%d %H:%M")),
        _of_set("origin", lambda s: _origin(s, tracked)),
        Column(last, lambda record: record["last"]),
    ]


def _run_sets_section(inputs: _Inputs) -> list[str]:
    lines = [
        "## Run sets",
        "",
        "Runs are aggregated and paired only within a set: one git commit, one machine (CPU model, and GPU "
        "model when there is one; other floating-point kernels move results) and one world size. For each data "
        "set, protocol and backbone the newest complete set is used (newest by `env.json`'s date, else the "
        "files' time); every other set is listed below it and used nowhere. Origin: committed reference data "
        "(tracked by git) or a local run (untracked, e.g. written by `make reproduce` in your checkout).",
        "",
    ]
    if not inputs.used_sets and not inputs.not_used_sets:
        return lines + ["No runs yet.", ""]
    used = [
        {"set": run_set, "last": "complete" if run_set.complete else "incomplete (no complete set)"}
        for run_set in inputs.used_sets.values()
    ]
    state_columns = _run_set_columns(inputs.tracked, "state")
    lines += [_md_table(state_columns, used) if used else "No set has a finished run yet.", ""]
    if inputs.not_used_sets:
        not_used = [{"set": run_set, "last": reason} for run_set, reason in inputs.not_used_sets]
        not_used_table = _md_table(_run_set_columns(inputs.tracked, "why not used"), not_used)
        lines += ["### Older sets, not used", "", not_used_table, ""]
    return lines


#: The paired-comparison tables: one row a :func:`harness.compare.paired_records` record with a metric.
_PAIRED_COLUMNS = [
    _RECORD_PROTOCOL,
    Column("arch", lambda r: r["arch"] or "n/a"),
    Column("comparison (a vs b)", lambda r: r["comparison"]),
    Column("metric", lambda r: METRIC_LABELS[r["metric"]]),
    Column("seeds", lambda r: ", ".join(map(str, r["seeds"]))),
    Column("a - b [95 % interval]", lambda r: fmt_paired(r["mean"], r["low"], r["high"])),
    Column("p (paired t)", lambda r: fmt_p(r["p_value"])),
    Column("verdict", lambda r: r["verdict"]),
]


def _paired_section(inputs: _Inputs) -> list[str]:
    lines = [
        "## Paired comparisons",
        "",
        "Each comparison is a paired difference `a - b` over the seeds both sides ran in the set used (same "
        "data, initial weights and first label phase per seed), with its Student-t 95 % interval and the "
        "two-sided paired t-test's p-value (`harness/stats.py`). *Distinguishable* means the interval excludes "
        "0. Each ablation against full SPAL is in the Ablation section.",
        "",
    ]
    records = [r for r in paired_records(inputs.groups) if r["kind"] != "ablation"]
    for dataset, layout in _curve_keys(inputs):
        title = _dataset_name(inputs.tables, dataset) if dataset in REAL_DATASETS else f"synthetic ({layout})"
        mine = [r for r in records if r["dataset"] == dataset and r["layout"] == layout]
        lines += [f"### {title}", ""]
        if not mine:
            lines += [f"No runs to compare on {title} yet.", ""]
            continue
        measured = [r for r in mine if r["metric"] is not None]
        if measured:
            lines += [_md_table(_PAIRED_COLUMNS, measured), ""]
        lines += [
            f"- {_protocol_cell(r['protocol'], r['version'])} / {r['arch'] or 'n/a'}: {r['comparison']}: {r['note']}."
            for r in mine
            if r["metric"] is None
        ]
        lines.append("")
    return lines


def _curve_inputs(
    inputs: _Inputs, dataset: str, layout: str | None
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """``(raw points from compare, plot-ready lines)`` of one data set's cost curve."""
    points = cost_curve_points(inputs.groups, dataset, layout)
    lines = {
        label: [
            {
                "queries": p["queries"].mean,
                "queries_std": p["queries"].std,
                "mAP": p["mAP"].mean,
                "mAP_std": p["mAP"].std,
                "rank1": p["rank1"].mean,
                "rank1_std": p["rank1"].std,
            }
            for p in pts
        ]
        for label, pts in points.items()
    }
    return points, lines


def _curve_keys(inputs: _Inputs) -> list[tuple[str, str | None]]:
    """The data sets with a cost curve: both real ones always, generated layouts with runs."""
    return [(d, None) for d in REAL_DATASETS] + [("synthetic", layout) for layout in _synthetic_layouts(inputs)]


#: The points of a cost curve: one row a :func:`harness.compare.cost_curve_points` point with its line's label
#: as ``selection``.
_COST_CURVE_COLUMNS = [
    Column("selection", lambda p: p["selection"]),
    Column("budget", lambda p: p["budget"]),
    Column("queries spent", lambda p: fmt_mean_std(p["queries"], integer=True)),
    Column("mAP", lambda p: fmt_mean_std(p["mAP"])),
    Column("Rank-1", lambda p: fmt_mean_std(p["rank1"])),
    Column("runs", lambda p: _runs_cell(p["run_ids"])),
]


def _cost_curve_section(inputs: _Inputs) -> list[str]:
    lines = [
        "## Annotation budget and cost curves",
        "",
        "mAP and Rank-1 against the pair queries actually spent, one line per selection strategy (runs "
        "whose variant changes only the budget and the selection; mean over seeds, shaded band ± one std). On "
        "real data the bounds are drawn as horizontal lines (dashed: no labels, dotted: all labels) and the "
        "2n budget as a vertical line.",
        "",
    ]
    for dataset, layout in _curve_keys(inputs):
        key = dataset_key(dataset, layout)
        title = _dataset_name(inputs.tables, dataset) if dataset in REAL_DATASETS else f"synthetic ({layout})"
        lines += [f"### {title}", ""]
        points, _ = _curve_inputs(inputs, dataset, layout)
        rows = [{"selection": label, **p} for label, pts in points.items() for p in pts]
        if rows:
            lines += [_md_table(_COST_CURVE_COLUMNS, rows), ""]
        else:
            lines += [f"No budget-sweep runs on {title} yet.", ""]
        lines += [f"![cost curve, {title}]({_cost_curve_file(key)})", ""]
    return lines


def _curve_sets(inputs: _Inputs) -> list[RunSet]:
    """The set whose training curves are drawn for each context: the set used, else (no finished run yet)
    the newest set, so that a run in progress can be watched."""
    sets = dict(inputs.used_sets)
    for run_set, _ in inputs.not_used_sets:  # newest first within a context
        sets.setdefault(run_set.context, run_set)
    return [sets[c] for c in sorted(sets, key=lambda c: tuple(map(str, c)))]


def _training_keys(inputs: _Inputs) -> dict[tuple[str, str], dict[str, list[Run]]]:
    """``{(data set key, protocol): {line label: runs}}``: one line a variant of the set drawn; the version
    and backbone join the label only when one figure holds several."""
    figures: dict[tuple[str, str], list[RunSet]] = {}
    for run_set in _curve_sets(inputs):
        context = run_set.context
        figures.setdefault((dataset_key(context.dataset, context.layout), context.protocol), []).append(run_set)
    out: dict[tuple[str, str], dict[str, list[Run]]] = {}
    for key, run_sets in sorted(figures.items()):
        lines: dict[str, list[Run]] = {}
        for run_set in run_sets:
            suffix = ""
            if len(run_sets) > 1:
                suffix = f" ({_protocol_cell(run_set.context.protocol, run_set.context.version)}, "
                suffix += f"{run_set.context.arch or 'n/a'})"
            for run in run_set.runs:
                lines.setdefault(f"{run.variant}{suffix}", []).append(run)
        out[key] = {label: lines[label] for label in sorted(lines, key=lambda v: (not v.startswith("full"), v))}
    return out


def _training_section(inputs: _Inputs) -> list[str]:
    lines = [
        "## Training curves",
        "",
        "Per data set and protocol, the runs of the set used (see Run sets; finished or not): mAP against "
        "epoch, pair queries spent against epoch, and mAP against queries spent (`metrics.jsonl`). One line a "
        "variant, the mean over its seeds, with a band of ± one standard deviation.",
        "",
    ]
    keys = _training_keys(inputs)
    if not keys:
        return lines + ["No runs yet.", ""]
    for key, protocol in keys:
        lines += [f"![training curves, {key} / {protocol}]({_training_file(key, protocol)})", ""]
    return lines


def _seconds(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2f} s"


#: The seconds each phase of an epoch took: one row a ``per_epoch`` record of a GPU protocol file.
_GPU_EPOCH_COLUMNS = [
    Column("epoch", lambda p: p.get("epoch")),
    Column("label phase", lambda p: _seconds(p.get("label_phase_s"))),
    Column("train", lambda p: _seconds(p.get("train_s"))),
    Column("evaluation", lambda p: _seconds(p.get("evaluation_s"))),
    Column("checkpoint", lambda p: _seconds(p.get("checkpoint_s"))),
]

#: The paper protocol's goals on one GPU: one row a goal of :func:`_gpu_goal_rows`.
_GPU_GOAL_COLUMNS = [
    Column("goal", lambda g: g["goal"]),
    Column("measured", lambda g: g["measured"]),
    Column("target", lambda g: g["target"]),
    Column("", lambda g: g["verdict"]),
]


def _gpu_goal_rows(data: Mapping[str, Any]) -> list[dict[str, str]]:
    """A GPU protocol record's three goals, each measured against its target (cells of :data:`_GPU_GOAL_COLUMNS`):
    the projected 50-epoch time, the training step against its CUDA-graph ceiling, the label phase's time."""
    targets = data.get("targets", {})
    ratio, ceiling = data.get("ratio"), data.get("ceiling_img_s")
    met = data.get("meets_targets", {})

    def verdict(key: str) -> str:
        return "met" if met.get(key) else "not met"

    return [
        {
            "goal": "50-epoch protocol (projected)",
            "measured": _seconds(data.get("projected_total_s")),
            "target": f"<= {targets.get('projected_total_s')} s",
            "verdict": verdict("projected_total_s"),
        },
        {
            "goal": "training step vs CUDA-graph ceiling",
            "measured": "n/a" if ratio is None else f"{ratio:.1%} ({data.get('train_img_s')} of {ceiling} img/s)",
            "target": f">= {targets.get('ratio', 0):.0%}",
            "verdict": verdict("ratio"),
        },
        {
            "goal": "label phase an epoch",
            "measured": _seconds(data.get("label_phase_s")),
            "target": f"<= {targets.get('label_phase_s')} s",
            "verdict": verdict("label_phase_s"),
        },
    ]


def gpu_protocol_section(records: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The GPU section: for each ``gpu-protocol-msmt17-*.json`` record (``make gpu-check``), the device, each
    phase an epoch, and the three goals of the paper protocol on one GPU against the measured figures."""
    lines = ["### The paper protocol on one GPU (MSMT17 size)", ""]
    if not records:
        return lines + ["No GPU record yet: `make gpu-check` on a GPU machine writes "
                        "`results/bench/gpu-protocol-msmt17-<device>.json`.", ""]  # fmt: skip
    for name, data in records:
        lines += [
            f"`results/bench/{name}`: {data.get('device')}, torch {data.get('torch')}, commit "
            f"{(data.get('git_commit') or 'unknown')[:12]}, {data.get('epochs_timed')} epochs timed.",
            "",
            _md_table(_GPU_EPOCH_COLUMNS, data.get("per_epoch", [])),
            "",
            _md_table(_GPU_GOAL_COLUMNS, _gpu_goal_rows(data)),
            "",
            f"Start-up {_seconds(data.get('startup_s'))}, warm-up {_seconds(data.get('warmup_s'))}, compile "
            f"{_seconds(data.get('compile_s'))}, one evaluation at the real test sizes "
            f"{_seconds(data.get('evaluation_s'))}, test-set decode {_seconds(data.get('test_decode_s'))}. "
            f"{data.get('projection_formula', '')}.",
            "",
        ]
    return lines


def _bench_section(inputs: _Inputs) -> list[str]:
    lines = ["## Benchmarks", ""]
    gpu_records = []
    for name, _, _ in inputs.bench:
        if name.startswith("gpu-protocol-"):
            try:
                gpu_records.append((name, json.loads((inputs.results / "bench" / name).read_text())))
            except (OSError, json.JSONDecodeError):
                continue  # the headline loop below names the unreadable file
    lines += gpu_protocol_section(gpu_records)
    if not inputs.bench:
        return lines + ["No benchmark results yet (`results/bench/*.json`).", ""]
    headlines: list[dict[str, Any]] = []
    skipped: list[str] = []
    for name, _, _ in inputs.bench:
        try:
            headlines += headline_of(name, json.loads((inputs.results / "bench" / name).read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            # A file without its headline that lacks a figure its benchmark writes: say so, keep its record below.
            skipped.append(f"- `results/bench/{name}`: no headline ({type(err).__name__}: {err})")
    if headlines:
        lines += ["Each figure with the baseline measured in the same run (see the file for the full record).", ""]
        lines += [_md_table(_bench_table_columns(HEADLINE_COLUMNS), headlines), ""]
    if skipped:
        lines += [*skipped, ""]
    for name, records, meta in inputs.bench:
        columns = _bench_table_columns(_bench_keys(records))
        lines += ["<details>", f"<summary>every field of <code>results/bench/{name}</code></summary>", ""]
        if meta:
            lines += [", ".join(f"{k}: {_bench_cell(v)}" for k, v in meta.items()), ""]
        lines += [_md_table(columns, records) if records else "No records in this file.", "", "</details>", ""]
    return lines


def _commit_cell(run: Run) -> str:
    env = run.env or {}
    sha = env.get("git_commit")
    text = sha[:12] if sha else "unknown"
    if env.get("git_dirty"):
        text += " (dirty)"
    return text


_ABSENT = object()


def _recorded(run: Run, name: str) -> Any:
    """A run's ``name`` as recorded: ``final.json``, else ``config.json``, else its ``train`` settings;
    :data:`_ABSENT` when none of them has the key (runs made before the key existed)."""
    for source in (run.final or {}, run.config, run.train):
        if name in source:
            return source[name]
    return _ABSENT


def _no_weights(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null"))


def _pretrained_cell(value: Any) -> str:
    """The start weights: ``name (sha256 prefix)`` from a ``{"name" | "path", "sha256"}`` record, the file
    name of a path, ``none`` for random initialisation, ``n/a`` when the run did not record it."""
    if value is _ABSENT:
        return "n/a"
    if _no_weights(value):
        return "none"
    if isinstance(value, Mapping):
        name = value.get("name") or Path(str(value.get("path") or "?")).name
        sha = value.get("sha256")
        return f"{name} (sha256 {sha[:12]})" if sha else str(name)
    return Path(str(value)).name


def _precision_cell(run: Run) -> str:
    """The precision a run trained in: ``final.json``'s, else the one its config asked for; runs made before
    ``--precision`` existed say it through ``amp`` (bf16 autocast when true)."""
    precision = _recorded(run, "precision")
    if isinstance(precision, str):
        return precision
    if precision is None:
        return "default (bf16 on CUDA, fp32 on the CPU)"
    amp = _recorded(run, "amp")
    if isinstance(amp, bool):
        return "bf16 (amp)" if amp else "fp32"
    return "n/a"


def _run_bn_batch(run: Run) -> tuple[float | None, str]:
    """The BN batch as recorded (``bn_batch``), else as the config implies it (:attr:`Run.bn_batch`)."""
    recorded = _recorded(run, "bn_batch")
    if recorded is not _ABSENT and recorded is not None:
        return float(recorded), _bn_cell(float(recorded))
    computed = run.bn_batch
    if computed is None:
        return None, "n/a"
    paper = "" if computed == PAPER_BN_BATCH else f"; paper: {PAPER_BN_BATCH}"
    return computed, f"{fmt_num(computed, 0)} (from config{paper})"


def _paper_layout_cell(run: Run, bn_batch: float | None) -> str:
    """For a ``paper``-protocol run: does it train as the paper did (BN batch 16, pretrained weights)?"""
    if run.protocol != "paper":
        return "-"
    differences = []
    if bn_batch != PAPER_BN_BATCH:
        differences.append(f"BN batch {fmt_num(bn_batch, 0)}, paper {PAPER_BN_BATCH}")
    pretrained = _recorded(run, "pretrained")
    if pretrained is _ABSENT or _no_weights(pretrained):
        differences.append("no pretrained weights recorded" if pretrained is _ABSENT else "no pretrained weights")
    if not differences:
        return "as the paper"
    return f"differs from the paper's layout/weights ({'; '.join(differences)})"


def _run_use(run: Run, used_paths: set[Path], reasons: Mapping[Path, str]) -> str:
    if run.path in used_paths:
        return "used"
    if run.path in reasons:
        return f"not used: set {reasons[run.path]}"
    if not run.complete:
        return "not used: unfinished"
    return "not used: a newer run of this seed in the set"


def _status_cell(run: Run) -> str:
    if run.complete:
        return "complete"
    epochs = [m.get("epoch") for m in run.metrics if m.get("epoch") is not None]
    return f"incomplete (last epoch logged: {max(epochs)})" if epochs else "incomplete (no epoch logged)"


def _run_record(run: Run, inputs: _Inputs, used_paths: set[Path], reasons: Mapping[Path, str]) -> dict[str, Any]:
    """A row of the runs listing (:data:`_RUN_COLUMNS`): the run, its ``final.json`` (``{}`` unfinished), its
    BN batch as a number and as a cell, whether the report uses it, and its folder under ``results/``."""
    bn_batch, bn_text = _run_bn_batch(run)
    return {
        "run": run,
        "final": run.final or {},
        "bn_batch": bn_batch,
        "bn_text": bn_text,
        "use": _run_use(run, used_paths, reasons),
        "path": str(run.path.relative_to(inputs.results)),
    }


def _world_size_cell(run: Run) -> str:
    world = run.set_key.world_size
    return "n/a" if world is None else str(world)


def _of_run(header: str, cell: Callable[[Run], Any]) -> Column:
    """A column of the runs listing read off the run alone."""
    return Column(header, lambda record: cell(record["run"]))


#: The runs listing: one row a :func:`_run_record`, every run found, used or not.
_RUN_COLUMNS = [
    _of_run("run", lambda run: run.run_id),
    _of_run("data set", lambda run: dataset_key(run.dataset, run.layout)),
    _of_run("protocol", lambda run: _protocol_cell(run.protocol, run.version)),
    _of_run("variant", lambda run: run.variant),
    _of_run("seed", lambda run: str(run.seed)),
    _of_run("status", _status_cell),
    Column("mAP", lambda r: fmt_num(r["final"].get("mAP"))),
    Column("queries spent", lambda r: fmt_int(r["final"].get("queries_spent"))),
    Column("device", lambda r: r["final"].get("device") or (r["run"].env or {}).get("gpu_name") or "n/a"),
    _of_run("precision", _precision_cell),
    _of_run("world size", _world_size_cell),
    Column("BN batch", lambda r: r["bn_text"]),
    _of_run("pretrained", lambda run: _pretrained_cell(_recorded(run, "pretrained"))),
    Column("paper layout/weights", lambda r: _paper_layout_cell(r["run"], r["bn_batch"])),
    _of_run("git commit", _commit_cell),
    Column("in report", lambda r: r["use"]),
    Column("path", lambda r: r["path"]),
]


def _runs_section(inputs: _Inputs) -> list[str]:
    lines = ["## Runs", ""]
    if inputs.runs:
        used_paths = {run.path for runs in inputs.groups.values() for run in runs}
        reasons = {run.path: reason for run_set, reason in inputs.not_used_sets for run in run_set.runs}
        records = [_run_record(run, inputs, used_paths, reasons) for run in inputs.runs]
        lines += [_md_table(_RUN_COLUMNS, records), ""]
    else:
        lines += ["No runs yet.", ""]
    if inputs.problems:
        lines += ["### Files that could not be read", ""] + [f"- {p}" for p in inputs.problems] + [""]
    return lines


# ------------------------------------------------------------------------------------------------ public


def _read_inputs(results_dir: Path | str) -> _Inputs:
    results = Path(results_dir)
    runs, problems = load_runs(results)
    bench = _load_bench(results, problems)
    used, not_used = split_run_sets(runs)
    tracked = tracked_files(results / "runs")
    return _Inputs(
        results, load_paper_tables(results), runs, problems, group_runs(runs), bench, used, not_used, tracked
    )


def _render(inputs: _Inputs) -> str:
    lines = _header(inputs)
    lines += _run_sets_section(inputs)
    for dataset in REAL_DATASETS:
        lines += _real_dataset_section(inputs, dataset)
    lines += _synthetic_section(inputs)
    lines += _paired_section(inputs)
    lines += _ablation_section(inputs)
    lines += _cost_curve_section(inputs)
    lines += _training_section(inputs)
    lines += _bench_section(inputs)
    lines += _runs_section(inputs)
    return "\n".join(lines).rstrip() + "\n"


def build_report(results_dir: Path | str) -> str:
    """The Markdown text of ``REPORT.md`` for the results under ``results_dir`` (nothing is written).

    Figures are linked relative to ``results_dir`` (``figures/...``); :func:`write_report` draws them.

    Raises:
        harness.paper.PaperTableError: when a paper table is invalid (the message names the file and row).
    """
    return _render(_read_inputs(results_dir))


def _draw_figures(inputs: _Inputs) -> list[Path]:
    written = []
    bounds_table = inputs.tables["bounds"]
    for dataset, layout in _curve_keys(inputs):
        _, lines = _curve_inputs(inputs, dataset, layout)
        bounds = []
        budget_2n = None
        if dataset in REAL_DATASETS:
            n = _num_train_images(inputs.tables, dataset)
            budget_2n = 2 * n if n else None
            if dataset in bounds_table["datasets"]:
                bounds = [
                    {
                        "label": f"{row['method']} ({row.get('backbone', '')}), {row.get('setting', '')}",
                        "setting": row.get("setting", ""),
                        **{m: row[dataset].get(m) for m in ("mAP", "rank1")},
                    }
                    for row in bounds_table["rows"]
                ]
        title = _dataset_name(inputs.tables, dataset) if dataset in REAL_DATASETS else f"synthetic ({layout})"
        path = inputs.results / _cost_curve_file(dataset_key(dataset, layout))
        written.append(plot_cost_curve(path, f"Cost curve: {title}", lines, bounds, budget_2n))
    for (key, protocol), variants in _training_keys(inputs).items():
        bands = {
            f"{label} (n={len(runs)})": training_bands([run.metrics for run in runs])
            for label, runs in variants.items()
        }
        path = inputs.results / _training_file(key, protocol)
        written.append(plot_training_curves(path, f"{key} / {protocol}", bands))
    return written


def write_report(results_dir: Path | str) -> Path:
    """Write ``<results_dir>/REPORT.md``, its figures (``figures/*.png``) and tables (``tables/*``).

    Returns:
        the path of ``REPORT.md``.
    """
    inputs = _read_inputs(results_dir)
    figures = _draw_figures(inputs)
    tables = write_tables(inputs.results)
    path = inputs.results / "REPORT.md"
    path.write_text(_render(inputs))
    logger.info("wrote %s (%d figures, %d table files)", path, len(figures), len(tables))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.report``: regenerate ``results/REPORT.md`` with its figures and tables."""
    parser = argparse.ArgumentParser(prog="python -m harness.report", description=main.__doc__)
    parser.add_argument("--results", default="results", help="the results folder (default: results)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_report(args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
