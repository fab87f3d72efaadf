"""``make ci-regression``: a check of the method that holds on any CPU.

It runs a cut of the ``synthetic-bench`` protocol (``results/ci/baseline.json`` names it: the layout, the seeds
and the two variants ``full`` and ``budget=0``) and judges two things that do not hinge on one machine's
floating-point rounding:

1. **The gain** of SPAL over the same runs without labels, paired over the same seeds on the same machine: its
   mean must reach ``gain.min_mAP``. A method whose labels stop mattering (constraints ignored, answers lost)
   has a gain near 0 and fails, whatever the CPU.
2. **The level** of full SPAL's mean mAP: it may not fall more than ``full.mAP_tolerance`` below
   ``full.mAP``; the tolerance is set from the spread measured across seeds and across CPU kinds (the
   baseline's ``justification`` and ``measurements`` say which figures set it).

A better result passes and says that the baseline could be raised.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.stats import mean_std, paired_comparison

__all__ = ["BASELINE_PATH", "judge", "load_baseline", "main"]

BASELINE_PATH = Path(__file__).resolve().parent.parent / "results" / "ci" / "baseline.json"
_REQUIRED = ("protocol", "layout", "seeds", "full", "gain", "justification")


def load_baseline(path: Path = BASELINE_PATH) -> dict[str, Any]:
    """Read the baseline and check its keys (see the module docstring)."""
    if not path.is_file():
        raise FileNotFoundError(f"no CI baseline at {path}: run `make ci-regression` once and record its numbers")
    baseline = json.loads(path.read_text())
    missing = [k for k in _REQUIRED if k not in baseline]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    if not {"mAP", "mAP_tolerance"} <= set(baseline["full"]) or "min_mAP" not in baseline["gain"]:
        raise ValueError(f"{path}: full needs mAP and mAP_tolerance, gain needs min_mAP")
    return baseline


def judge(
    full: Mapping[int, float], zero: Mapping[int, float], baseline: Mapping[str, Any]
) -> tuple[bool, list[list[Any]]]:
    """Judge one measured cut.

    Args:
        full: seed -> final mAP (percent) of full SPAL.
        zero: seed -> final mAP of the same runs with budget 0.
        baseline: the parsed baseline file.

    Returns:
        ``(ok, rows)`` with rows ``[check, expected, measured, verdict]``; a seed missing from either side fails.
    """
    rows: list[list[Any]] = []
    seeds = [int(s) for s in baseline["seeds"]]
    missing = [s for s in seeds if s not in full or s not in zero]
    if missing:
        rows.append(["runs", f"seeds {seeds}", f"missing seeds {missing}", "FAIL: no result"])
        return False, rows
    gain = paired_comparison({s: full[s] for s in seeds}, {s: zero[s] for s in seeds})
    minimum = float(baseline["gain"]["min_mAP"])
    gain_ok = gain.mean >= minimum
    per_seed = ", ".join(f"{d:+.2f}" for d in gain.differences)
    rows.append(
        [
            "SPAL - budget 0, mean paired mAP gain",
            f">= {minimum:.2f}",
            f"{gain.mean:+.2f} (per seed {per_seed})",
            "ok" if gain_ok else "FAIL: the labels no longer help",
        ]
    )
    level, _ = mean_std([full[s] for s in seeds])
    reference = float(baseline["full"]["mAP"])
    tolerance = float(baseline["full"]["mAP_tolerance"])
    if level < reference - tolerance:
        verdict = "FAIL: regression"
    elif level > reference + tolerance:
        verdict = "ok (better: the baseline could be raised)"
    else:
        verdict = "ok"
    rows.append(["full SPAL, mean mAP", f"{reference:.2f} +- {tolerance:.2f}", f"{level:.2f}", verdict])
    return gain_ok and not verdict.startswith("FAIL"), rows


def main(argv: list[str] | None = None) -> int:
    from tabulate import tabulate

    from harness.cli import add_run_flags
    from harness.matrix import build_cells, parse_override, run_matrix

    parser = argparse.ArgumentParser(
        prog="python -m harness ci-regression",
        description="run the baseline's cut of its protocol and judge SPAL's paired gain and level",
    )
    parser.add_argument("--baseline", type=Path, default=BASELINE_PATH)
    add_run_flags(parser, "synthetic layout (default: the baseline's)")
    args = parser.parse_args(argv)
    baseline = load_baseline(args.baseline)
    cells = build_cells(
        "synthetic",
        "sweep",
        protocol=baseline["protocol"],
        seeds=baseline["seeds"],
        layouts=[args.layouts or baseline["layout"]],
        overrides=dict(parse_override(o) for o in args.override),
        variants_wanted=["full", "budget=0"],
    )
    results = run_matrix(cells, args.data_dir)
    by_kind: dict[str, dict[int, float]] = {"full": {}, "zero": {}}
    for result in results:
        final = result.final or {}
        if final.get("mAP") is None:
            continue
        kind = "full" if result.cell.extra["kind"] == "full" else "zero"
        by_kind[kind][result.cell.seed] = float(final["mAP"])
    ok, rows = judge(by_kind["full"], by_kind["zero"], baseline)
    sys.stdout.write(tabulate(rows, headers=["check", "expected", "measured", "verdict"], tablefmt="github") + "\n")
    sys.stdout.write(("CI regression check passed" if ok else "CI regression check FAILED: see the table") + "\n")
    return 0 if ok else 1
