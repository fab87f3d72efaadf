"""The paper's tables as data: load and validate ``results/paper/*.json``, look values up.

How to fill in the paper's numbers. The reference numbers live in ``results/paper/``, one JSON file a table:
``spal_main.json`` (SPAL against active-learning methods: mAP, Rank-1/5/10, pair queries),
``spal_unsupervised_supervised.json`` (against unsupervised and fully supervised training),
``spal_ablation.json`` (one row a component ablation, keyed by the harness variant name such as
``selection=random``) and ``bounds.json`` (the known no-label / all-label numbers of other projects, already
complete, each row with its source). SPAL's own values are ``null`` with ``"status": "not transcribed"``
because the paper could not be read where this project was built. With the PDF of arXiv 2204.10008 at hand,
open the table's file, replace each ``null`` under ``market1501`` / ``msmt17`` by the number printed in the
paper (mAP and Rank-k in percent exactly as printed, e.g. 73.1; ``queries`` in pair queries), replace
``"status": "not transcribed"`` by ``"source": "SPAL paper, Table N"``, and add one row of the same shape for
every further method the paper's table lists. Values the paper does not give stay ``null``. Then
``python -m harness.paper`` checks the files and ``python -m harness.report`` (which ``make reproduce``
runs at its end) regenerates ``results/REPORT.md``: the comparison picks the numbers up with no code
change, and every cell still ``null`` keeps reading "n/a (paper value not transcribed)".

File format (checked by :func:`validate_table`): a top-level object with ``table`` (the file's stem),
``title``, ``description``, ``how_to_fill_in``, ``datasets`` (``{key: {"name", "num_train_images"}}``),
``metrics`` (the metric keys every row gives per data set) and ``rows``. Each row has a ``method`` string, per
data set key an object with exactly the table's metrics (number or ``null``), and either a ``source`` string
or ``"status": "not transcribed"`` (then every value is ``null``). Optional row keys: ``variant`` (the harness
variant the row corresponds to), ``arch`` (the harness backbone name), ``backbone``, ``setting``, ``note``,
``url``, ``cost_unit``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "NOT_TRANSCRIBED",
    "PAPER_DIR",
    "RATE_METRICS",
    "REQUIRED_TABLES",
    "PaperTableError",
    "find_rows",
    "load_tables",
    "main",
    "paper_value",
    "validate_table",
]

logger = logging.getLogger(__name__)

PAPER_DIR = Path(__file__).resolve().parents[1] / "results" / "paper"

#: The tables the report always shows.
REQUIRED_TABLES: tuple[str, ...] = ("spal_main", "spal_unsupervised_supervised", "spal_ablation", "bounds")

NOT_TRANSCRIBED = "not transcribed"

#: Metrics in percent (0..100).
RATE_METRICS: tuple[str, ...] = ("mAP", "mINP", "rank1", "rank5", "rank10")
#: Annotation cost metrics (counts >= 0).
COST_METRICS: tuple[str, ...] = ("queries", "cost")

_TOP_REQUIRED = ("table", "title", "description", "how_to_fill_in", "datasets", "metrics", "rows")
_TOP_OPTIONAL = ("source", "status", "units")
_ROW_TEXT_KEYS = ("method", "variant", "arch", "backbone", "setting", "note", "url", "cost_unit", "source")


class PaperTableError(ValueError):
    """A paper table file is malformed; the message names the file, the row and how to fix it."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _row_label(index: int, row: Mapping[str, Any]) -> str:
    method = row.get("method") if isinstance(row, Mapping) else None
    label = f"row {index}"
    if method:
        label += f" (method {method!r}"
        label += f", variant {row['variant']!r})" if row.get("variant") else ")"
    return label


def _validate_row(where: str, row: Any, datasets: Sequence[str], metrics: Sequence[str]) -> None:
    if not isinstance(row, dict):
        raise PaperTableError(f"{where}: must be a JSON object")
    allowed = set(_ROW_TEXT_KEYS) | {"status"} | set(datasets)
    unknown = sorted(set(row) - allowed)
    if unknown:
        raise PaperTableError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    for key in _ROW_TEXT_KEYS:
        if key in row and not (isinstance(row[key], str) and row[key]):
            raise PaperTableError(f"{where}: {key} must be a non-empty string")
    if "method" not in row:
        raise PaperTableError(f"{where}: every row needs a 'method' string")
    values: list[Any] = []
    for dataset in datasets:
        cell = row.get(dataset)
        if not isinstance(cell, dict) or set(cell) != set(metrics):
            raise PaperTableError(
                f"{where}: '{dataset}' must be an object with exactly the keys {', '.join(metrics)} "
                "(a number or null each)"
            )
        for metric in metrics:
            value = cell[metric]
            if value is None:
                continue
            if not _is_number(value):
                raise PaperTableError(f"{where}: {dataset}.{metric} = {value!r} must be a number or null")
            if metric in RATE_METRICS and not 0 <= value <= 100:
                raise PaperTableError(
                    f"{where}: {dataset}.{metric} = {value} is not a percentage in [0, 100] (write 73.1, not 0.731)"
                )
            if metric in COST_METRICS and value < 0:
                raise PaperTableError(f"{where}: {dataset}.{metric} = {value} must be >= 0")
            values.append(value)
    status = row.get("status")
    if status is not None and status != NOT_TRANSCRIBED:
        raise PaperTableError(f"{where}: status must be {NOT_TRANSCRIBED!r} or absent, got {status!r}")
    if status == NOT_TRANSCRIBED and values:
        raise PaperTableError(
            f'{where}: has values but says "status": {NOT_TRANSCRIBED!r}; remove the status and add '
            '"source": "<where the numbers come from, e.g. SPAL paper, Table 2>"'
        )
    if status is None and "source" not in row:
        raise PaperTableError(
            f'{where}: needs a "source" string (where its numbers come from) or "status": {NOT_TRANSCRIBED!r}'
        )


def validate_table(name: str, table: Any, where: str | None = None) -> None:
    """Check one paper table (the parsed JSON of ``results/paper/<name>.json``).

    Raises:
        PaperTableError: naming ``where`` (default ``<name>.json``), the row and the problem.
    """
    where = where or f"{name}.json"
    if not isinstance(table, dict):
        raise PaperTableError(f"{where}: the top level must be a JSON object")
    missing = [k for k in _TOP_REQUIRED if k not in table]
    unknown = sorted(set(table) - set(_TOP_REQUIRED) - set(_TOP_OPTIONAL))
    if missing or unknown:
        raise PaperTableError(
            f"{where}: missing key(s) {', '.join(missing) or 'none'}, "
            f"unknown key(s) {', '.join(unknown) or 'none'}; "
            f"the top level holds {', '.join(_TOP_REQUIRED + _TOP_OPTIONAL)}"
        )
    if table["table"] != name:
        raise PaperTableError(f"{where}: 'table' is {table['table']!r}; it must equal the file name {name!r}")
    for key in ("title", "description", "how_to_fill_in"):
        if not (isinstance(table[key], str) and table[key]):
            raise PaperTableError(f"{where}: {key} must be a non-empty string")
    datasets = table["datasets"]
    if not (isinstance(datasets, dict) and datasets) or not all(
        isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("num_train_images"), int)
        for d in datasets.values()
    ):
        raise PaperTableError(f"{where}: datasets must map each data set key to {{name, num_train_images}}")
    metrics = table["metrics"]
    allowed_metrics = RATE_METRICS + COST_METRICS
    if not (isinstance(metrics, list) and metrics and set(metrics) <= set(allowed_metrics)):
        raise PaperTableError(f"{where}: metrics must be a non-empty list drawn from {', '.join(allowed_metrics)}")
    if not (isinstance(table["rows"], list) and table["rows"]):
        raise PaperTableError(f"{where}: rows must be a non-empty list")
    seen: dict[tuple[str, str | None, str | None], int] = {}
    for index, row in enumerate(table["rows"]):
        row_where = f"{where}: {_row_label(index, row)}"
        _validate_row(row_where, row, list(datasets), metrics)
        key = (row["method"], row.get("variant"), row.get("arch"))
        if key in seen:
            raise PaperTableError(f"{row_where}: duplicates row {seen[key]} (same method, variant and arch)")
        seen[key] = index


def load_tables(directory: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """Load and validate every ``*.json`` table in ``directory`` (default :data:`PAPER_DIR`).

    Returns:
        ``{table name (file stem): parsed table}``; all of :data:`REQUIRED_TABLES` are present.

    Raises:
        PaperTableError: for a missing required table, invalid JSON or an invalid table, naming the file.
    """
    folder = Path(directory) if directory is not None else PAPER_DIR
    tables: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise PaperTableError(f"{path}: not valid JSON ({err}); fix the file") from err
        validate_table(path.stem, data, str(path))
        tables[path.stem] = data
    missing = [name for name in REQUIRED_TABLES if name not in tables]
    if missing:
        raise PaperTableError(
            f"{folder}: missing table file(s) {', '.join(m + '.json' for m in missing)}; "
            f"restore them from version control (git checkout -- {folder})"
        )
    return tables


def find_rows(table: Mapping[str, Any], key: str, arch: str | None = None) -> list[dict[str, Any]]:
    """The rows of ``table`` whose ``method`` or ``variant`` equals ``key`` (and ``arch``, when given and the
    row names one)."""
    return [
        row
        for row in table["rows"]
        if key in (row["method"], row.get("variant")) and (arch is None or row.get("arch") in (None, arch))
    ]


def paper_value(table: Mapping[str, Any], key: str, dataset: str, metric: str, arch: str | None = None) -> float | None:
    """The value of ``metric`` on ``dataset`` in the row of ``table`` named ``key`` (a method or a variant).

    Returns:
        the number as written in the file, or ``None`` when it is not transcribed (never a guess).

    Raises:
        KeyError: when no row, or more than one row, matches (give ``arch`` to choose), or the table has no
            such data set or metric; the message lists what the table holds.
    """
    if dataset not in table["datasets"]:
        raise KeyError(f"table {table['table']!r} has no data set {dataset!r}; it has {', '.join(table['datasets'])}")
    if metric not in table["metrics"]:
        raise KeyError(f"table {table['table']!r} has no metric {metric!r}; it has {', '.join(table['metrics'])}")
    rows = find_rows(table, key, arch)
    if len(rows) != 1:
        names = ", ".join(
            sorted({r["method"] for r in table["rows"]} | {r["variant"] for r in table["rows"] if "variant" in r})
        )
        problem = "no row" if not rows else f"{len(rows)} rows (pass arch= to choose one)"
        raise KeyError(f"table {table['table']!r}: {problem} for {key!r}; rows: {names}")
    return rows[0][dataset][metric]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.paper [DIR]``: validate the paper tables and list what is transcribed."""
    parser = argparse.ArgumentParser(prog="python -m harness.paper", description=main.__doc__)
    parser.add_argument("directory", nargs="?", default=str(PAPER_DIR), help="folder of the paper tables")
    args = parser.parse_args(argv)
    try:
        tables = load_tables(args.directory)
    except PaperTableError as err:
        print(f"error: {err}")
        return 1
    for name, table in tables.items():
        cells = [row[d][m] for row in table["rows"] for d in table["datasets"] for m in table["metrics"]]
        filled = sum(v is not None for v in cells)
        print(f"{name}.json: {len(table['rows'])} rows, {filled} of {len(cells)} values transcribed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
