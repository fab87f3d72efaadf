"""``make demo``: SPAL on the synthetic benchmark next to the same run without labels (``--budget 0``).

Uses the ``synthetic-bench`` protocol (a ResNet-18 pretrained on a separate generated population, then SPAL on
the benchmark population, 64 x 32, CPU) for one seed, writes under ``logs/demo/`` (never ``results/``), prints
the per-epoch lines of both runs, a table, and what the comparison does and does not show.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "verdict_text"]

log = logging.getLogger(__name__)

PROTOCOL = "synthetic-bench"
LAYOUT = "market1501"


def _curve(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def verdict_text(spal: dict[str, Any], zero: dict[str, Any], seed: int) -> str:
    """The demo's closing words: the two numbers, their difference, and what one seed can and cannot say."""
    gap = spal["mAP"] - zero["mAP"]
    if gap > 0:
        reading = f"on this seed the {spal['queries_spent']} answered pairs raised mAP by {gap:.2f} points"
    elif gap < 0:
        reading = (
            f"on this seed SPAL ended {-gap:.2f} points BELOW the run without labels: the answers did not help here"
        )
    else:
        reading = "on this seed the answers changed nothing"
    return (
        f"SPAL mAP {spal['mAP']:.2f} % with {spal['queries_spent']} of {spal['budget']} pair queries vs "
        f"{zero['mAP']:.2f} % without labels (seed {seed}): {reading}. One seed is one draw; the verdict over "
        "5 seeds, with its 95 % interval, is in results/REPORT.md (make ablation / make sweep with "
        f"PROTOCOL={PROTOCOL})."
    )


def main(argv: list[str] | None = None) -> int:
    from tabulate import tabulate

    from harness.matrix import REPO_ROOT, build_cells, run_matrix
    from harness.protocols import load_protocol

    parser = argparse.ArgumentParser(
        prog="python -m harness demo", description="SPAL vs no labels on the synthetic benchmark, one seed"
    )
    parser.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    parser.add_argument("--out", default=str(REPO_ROOT / "logs" / "demo"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    protocol = load_protocol(PROTOCOL, "synthetic", layout=LAYOUT)
    train, pretrain = protocol["train"], protocol["pretrain"]
    out = Path(args.out)
    log.info(
        "demo: %s at %d x %d, %d epochs x %d iterations, batch %d, seed %d; backbone pretrained with identity "
        "labels on %d generated identities (generator seed %d, not the benchmark's); benchmark data: %s",
        train["arch"],
        train["height"],
        train["width"],
        train["epochs"],
        train["iters"],
        train["batch_size"],
        args.seed,
        pretrain["num_ids"],
        pretrain["data_seed"],
        train["synthetic"],
    )
    cells = build_cells(
        "synthetic",
        "sweep",
        protocol=PROTOCOL,
        seeds=[args.seed],
        layouts=[LAYOUT],
        variants_wanted=["full", "budget=0"],
    )
    results = {r.cell.variant: r for r in run_matrix(cells, args.data_dir, results=out / "results", logs=out / "logs")}
    if any(r.status == "failed" for r in results.values()):
        sys.stderr.write("demo: a run failed; see the log named above\n")
        return 1
    rows = []
    curves = {k: {m["epoch"]: m for m in _curve(r.run_dir)} for k, r in results.items()}
    for epoch in sorted(curves["full"]):
        full, zero = curves["full"][epoch], curves["budget=0"].get(epoch, {})
        rows.append(
            [
                epoch + 1,
                full.get("num_clusters"),
                zero.get("num_clusters"),
                full.get("queries_spent"),
                full.get("mAP"),
                zero.get("mAP"),
            ]
        )
    headers = ["epoch", "clusters (SPAL)", "clusters (budget 0)", "queries spent", "SPAL mAP %", "budget 0 mAP %"]
    sys.stdout.write("\n" + tabulate(rows, headers=headers, tablefmt="github", floatfmt=".2f") + "\n\n")
    sys.stdout.write(verdict_text(results["full"].final, results["budget=0"].final, args.seed) + "\n")
    sys.stdout.write(f"Run records: {out / 'results'}; checkpoints and annotation logs: {out / 'logs'}\n")
    return 0
