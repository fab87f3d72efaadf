"""``make demo``: SPAL on the synthetic set next to the same run without labels (``--budget 0``).

Uses the ``ci`` protocol's Market-1501-layout settings, writes under ``logs/demo/`` (not ``results/``), prints the
per-epoch lines of both runs and a final comparison table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

log = logging.getLogger(__name__)


def _curve(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    from tabulate import tabulate

    from harness.cli import REPO_ROOT, _environment, _synthetic_data_dir
    from harness.environment import collect_environment
    from harness.protocols import load_protocol
    from harness.runs import Cell, run_cell

    parser = argparse.ArgumentParser(prog="python -m harness demo")
    parser.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    parser.add_argument("--out", default=str(REPO_ROOT / "logs" / "demo"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    protocol = load_protocol("ci", "synthetic", layout="market1501")
    environment = _environment(collect_environment)
    out = Path(args.out)
    results = {}
    for variant, overrides in (("full", {}), ("budget=0", {"budget": 0})):
        train = {**protocol["train"], **overrides}
        cell = Cell(
            dataset="synthetic",
            protocol="ci",
            protocol_version=int(protocol["version"]),
            seed=args.seed,
            variant=variant,
            train=train,
            layout="market1501",
        )
        log.info("demo: training %s (%s)", "SPAL" if variant == "full" else "without labels", variant)
        results[variant] = run_cell(
            cell, out / "results", out / "logs", _synthetic_data_dir(args.data_dir, train), environment
        )
    if any(r.status == "failed" for r in results.values()):
        sys.stderr.write("demo: a run failed; see the log named above\n")
        return 1
    rows = []
    curves = {k: {m["epoch"]: m for m in _curve(r.run_dir)} for k, r in results.items()}
    for epoch in sorted(curves["full"]):
        full, zero = curves["full"][epoch], curves["budget=0"].get(epoch, {})
        if "mAP" in full:
            rows.append(
                [
                    epoch + 1,
                    full.get("num_clusters"),
                    full.get("queries_spent"),
                    full["mAP"],
                    full["rank1"],
                    zero.get("mAP"),
                    zero.get("rank1"),
                ]
            )
    headers = [
        "epoch",
        "clusters",
        "queries spent",
        "SPAL mAP %",
        "SPAL R1 %",
        "budget 0 mAP %",
        "budget 0 R1 %",
    ]
    sys.stdout.write("\n" + tabulate(rows, headers=headers, tablefmt="github", floatfmt=".2f") + "\n")
    spal, zero = results["full"].final, results["budget=0"].final
    gap = spal["mAP"] - zero["mAP"]
    sys.stdout.write(
        f"\nsynthetic data ({spal.get('synthetic_size')}), seed {args.seed}: SPAL mAP {spal['mAP']:.2f} % with "
        f"{spal['queries_spent']} of {spal['budget']} queries vs {zero['mAP']:.2f} % without labels "
        f"({'+' if gap >= 0 else ''}{gap:.2f})\n"
    )
    return 0
