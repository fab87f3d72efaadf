"""The harness's commands: reproduce, ablation, sweep, ci-regression, demo, bench, report, compare.

``reproduce`` checks for the data set before anything heavy is imported, so a missing data set fails within a
second with the tree to create.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from harness.datacheck import EXPECTED_TREES, expected_tree_message, missing_paths
from harness.flags import add_run_flags
from spal.engine.config import CHOICES

__all__ = ["run_command", "add_run_flags"]

log = logging.getLogger("harness")

_ALIASES = {
    "DATASET": "--dataset",
    "PROTOCOL": "--protocol",
    "SEEDS": "--seeds",
    "DATA_DIR": "--data-dir",
    "PRETRAINED": "--pretrained",
}


def _expand_aliases(argv: list[str]) -> list[str]:
    """Accept ``DATASET=msmt17``-style words (as ``docker run IMAGE reproduce DATASET=msmt17`` passes them)."""
    out: list[str] = []
    for word in argv:
        key, sep, value = word.partition("=")
        if sep and key in _ALIASES:
            out += [_ALIASES[key], value]
        else:
            out.append(word)
    return out


def _matrix_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m harness {prog}")
    parser.add_argument("--dataset", required=True, choices=CHOICES["dataset"])
    parser.add_argument(
        "--protocol", help="paper for real data, ci for synthetic unless given (see harness/protocols/)"
    )
    parser.add_argument("--seeds", help="comma-separated seeds (default: the protocol's)")
    parser.add_argument(
        "--pretrained",
        metavar="PATH|imagenet|none",
        help="the backbone's ImageNet weight file for every run (default: the protocol's train.pretrained; the "
        "paper protocol's 'imagenet' is the file in torch's hub cache, $TORCH_HOME/hub/checkpoints); the runs "
        "stop before any work when it is missing",
    )
    add_run_flags(parser, "synthetic only: comma-separated layouts (default: all the protocol has)")
    return parser


def _check_data(dataset: str, data_dir: str) -> bool:
    if dataset in EXPECTED_TREES and missing_paths(dataset, data_dir):
        sys.stderr.write(expected_tree_message(dataset, data_dir) + "\n")
        return False
    return True


def _run_matrix(kind: str, argv: list[str]) -> int:
    args = _matrix_parser(kind).parse_args(_expand_aliases(argv))
    if not _check_data(args.dataset, args.data_dir):
        return 2
    from harness.matrix import CellsRefused, build_cells, check_cells, parse_override, results_dir, run_matrix
    from harness.report import write_report

    cells = build_cells(
        args.dataset,
        "full" if kind == "reproduce" else kind,
        protocol=args.protocol,
        seeds=[int(s) for s in args.seeds.split(",")] if args.seeds else None,
        layouts=args.layouts.split(",") if args.layouts else None,
        overrides=dict(parse_override(o) for o in args.override),
        pretrained=args.pretrained,
    )
    try:
        check_cells(cells)
    except CellsRefused as error:
        sys.stderr.write(f"{kind}: {error}\n")
        return 2
    results = run_matrix(cells, args.data_dir)
    report = write_report(results_dir())
    _print_summary(results)
    log.info("report: %s", report)
    failed = [r for r in results if r.status == "failed"]
    return 1 if failed else 0


def _print_summary(results: list[Any]) -> None:
    from tabulate import tabulate

    rows = []
    for r in results:
        final = r.final or {}
        rows.append(
            [
                r.cell.dataset + (f"/{r.cell.layout}" if r.cell.layout else ""),
                r.cell.variant,
                r.cell.seed,
                r.status,
                final.get("mAP"),
                final.get("rank1"),
                final.get("queries_spent"),
                final.get("budget"),
                r.run_dir.name,
            ]
        )
    headers = ["data set", "variant", "seed", "status", "mAP %", "R1 %", "queries", "budget", "run id"]
    sys.stdout.write(tabulate(rows, headers=headers, tablefmt="github", floatfmt=".2f") + "\n")


def _ci_regression(argv: list[str]) -> int:
    from harness.regression import main as regression_main

    return regression_main(argv)


def _demo(argv: list[str]) -> int:
    from harness.demo import main as demo_main

    return demo_main(argv)


def _bench(argv: list[str]) -> int:
    from harness.bench.train_step import main as bench_main

    return bench_main(argv)


def run_command(command: str, argv: list[str]) -> int:
    """Dispatch ``python -m harness <command> <argv>``; returns the exit code."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    # faiss announces which CPU build it loaded, at INFO, on every start: noise here.
    logging.getLogger("faiss").setLevel(logging.WARNING)
    if command in ("reproduce", "ablation", "sweep"):
        return _run_matrix(command, argv)
    if command == "report":
        from harness.report import main as report_main

        return report_main(argv)
    if command == "compare":
        from harness.compare import main as compare_main

        return compare_main(argv)
    if command == "ci-regression":
        return _ci_regression(argv)
    if command == "demo":
        return _demo(argv)
    if command == "bench":
        return _bench(argv)
    raise SystemExit(f"unknown command {command!r}")
