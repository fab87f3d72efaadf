"""``make ci-regression``: run the ``ci`` protocol and compare its final metrics with ``results/ci/baseline.json``.

A metric that falls below its baseline by more than the stated tolerance fails the check with a table of what
moved; a better result passes (and says that the baseline could be raised).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["compare_with_baseline", "load_baseline", "main", "BASELINE_PATH"]

BASELINE_PATH = Path(__file__).resolve().parent.parent / "results" / "ci" / "baseline.json"
METRICS = ("mAP", "rank1")


def load_baseline(path: Path = BASELINE_PATH) -> dict[str, Any]:
    """Read the baseline; it must hold per-layout ``mAP`` (and optionally ``rank1``) with numeric tolerances."""
    if not path.is_file():
        raise FileNotFoundError(
            f"no CI baseline at {path}: run `make ci-regression` once and record its numbers"
        )
    baseline = json.loads(path.read_text())
    for key in ("mAP", "mAP_tolerance", "justification"):
        if key not in baseline:
            raise ValueError(f"{path}: missing key {key!r}")
    return baseline


def compare_with_baseline(
    finals: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, Any]
) -> tuple[bool, list[list[Any]]]:
    """Compare each layout's final metrics with the baseline.

    Args:
        finals: layout -> ``final.json`` content of the run (metrics in percent).
        baseline: the parsed baseline file.

    Returns:
        ``(ok, rows)``: ``ok`` is false when a metric fell by more than its tolerance or a run is missing; rows are
        ``[layout, metric, baseline, measured, change, tolerance, verdict]``.
    """
    ok = True
    rows: list[list[Any]] = []
    for metric in METRICS:
        expected = baseline.get(metric)
        if not isinstance(expected, Mapping):
            continue
        tolerance = float(baseline[f"{metric}_tolerance"])
        for layout, reference in expected.items():
            final = finals.get(layout)
            measured = None if final is None else final.get(metric)
            if measured is None:
                ok = False
                rows.append([layout, metric, reference, None, None, tolerance, "FAIL: no result"])
                continue
            change = float(measured) - float(reference)
            if change < -tolerance:
                ok = False
                verdict = "FAIL: regression"
            else:
                verdict = "ok" if change <= tolerance else "ok (better: the baseline could be raised)"
            rows.append(
                [layout, metric, reference, round(float(measured), 2), round(change, 2), tolerance, verdict]
            )
    return ok, rows


def main(argv: list[str] | None = None) -> int:
    from tabulate import tabulate

    from harness.cli import _build_cells, _environment, _logs_root, _results_dir, _synthetic_data_dir, add_run_flags
    from harness.environment import collect_environment
    from harness.runs import run_cell

    parser = argparse.ArgumentParser(prog="python -m harness ci-regression")
    parser.add_argument("--baseline", type=Path, default=BASELINE_PATH)
    add_run_flags(parser, "comma-separated synthetic layouts (default: every one in the baseline)")
    args = parser.parse_args(argv)
    baseline = load_baseline(args.baseline)
    layouts = args.layouts or ",".join(baseline["mAP"])
    matrix = argparse.Namespace(
        dataset="synthetic",
        protocol=baseline.get("protocol", "ci"),
        seeds=",".join(str(s) for s in baseline.get("seeds", [1])),
        layouts=layouts,
        override=args.override,
    )
    cells = _build_cells(matrix, "full")
    environment = _environment(collect_environment)
    finals: dict[str, dict[str, Any]] = {}
    for cell in cells:
        result = run_cell(
            cell, _results_dir(), _logs_root(), _synthetic_data_dir(args.data_dir, cell.train), environment
        )
        if result.final is not None:
            finals[cell.layout or cell.dataset] = result.final
    wanted = {k: v for k, v in baseline["mAP"].items() if k in layouts.split(",")}
    ok, rows = compare_with_baseline(
        finals,
        {
            **baseline,
            "mAP": wanted,
            "rank1": {k: v for k, v in baseline.get("rank1", {}).items() if k in wanted},
        },
    )
    headers = ["layout", "metric", "baseline %", "measured %", "change", "tolerance", "verdict"]
    sys.stdout.write(tabulate(rows, headers=headers, tablefmt="github") + "\n")
    sys.stdout.write(
        ("CI regression check passed" if ok else "CI regression check FAILED: see the table") + "\n"
    )
    return 0 if ok else 1
