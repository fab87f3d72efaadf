"""The harness's commands: reproduce, ablation, sweep, ci-regression, demo, bench, report, compare.

``reproduce`` checks for the data set before anything heavy is imported, so a missing data set fails within a
second with the tree to create.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from harness.datacheck import EXPECTED_TREES, expected_tree_message, missing_paths
from spal.engine.config import CHOICES

__all__ = ["run_command", "REPO_ROOT"]

log = logging.getLogger("harness")

REPO_ROOT = Path(__file__).resolve().parent.parent
_ALIASES = {"DATASET": "--dataset", "PROTOCOL": "--protocol", "SEEDS": "--seeds", "DATA_DIR": "--data-dir"}


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


def _results_dir() -> Path:
    return Path(os.environ.get("SPAL_RESULTS_DIR", REPO_ROOT / "results"))


def _logs_root() -> Path:
    return Path(os.environ.get("SPAL_LOGS_DIR", REPO_ROOT / "logs" / "runs"))


def add_run_flags(parser: argparse.ArgumentParser, layouts_help: str) -> None:
    """``--data-dir``, ``--layouts`` and ``--override``: the flags of every command that runs cells."""
    parser.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    parser.add_argument("--layouts", help=layouts_help)
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one training setting of every run (recorded in the variant name)",
    )


def _matrix_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m harness {prog}")
    parser.add_argument("--dataset", required=True, choices=CHOICES["dataset"])
    parser.add_argument(
        "--protocol", help="paper for real data, ci for synthetic unless given (see harness/protocols/)"
    )
    parser.add_argument("--seeds", help="comma-separated seeds (default: the protocol's)")
    add_run_flags(parser, "synthetic only: comma-separated layouts (default: all the protocol has)")
    return parser


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--override needs KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _check_data(dataset: str, data_dir: str) -> bool:
    if dataset in EXPECTED_TREES and missing_paths(dataset, data_dir):
        sys.stderr.write(expected_tree_message(dataset, data_dir) + "\n")
        return False
    return True


def _synthetic_data_dir(data_dir: str, train: dict[str, Any]) -> str:
    """Each synthetic size gets its own folder, so trees of different sizes never mix."""
    spec = json.dumps(train.get("synthetic") or {}, sort_keys=True)
    tag = hashlib.sha1(spec.encode()).hexdigest()[:8]
    return str(Path(data_dir) / "synthetic" / f"{train['synthetic_layout']}-{tag}")


def _build_cells(args: argparse.Namespace, kind: str) -> list[Any]:
    from harness.protocols import load_protocol, protocol_layouts, variants
    from harness.runs import Cell

    protocol_name = args.protocol or ("ci" if args.dataset == "synthetic" else "paper")
    layouts = protocol_layouts(protocol_name, args.dataset)
    if args.layouts:
        layouts = list(args.layouts.split(","))
    elif kind != "full":
        # The ablation and the sweep are many runs each: by default they use the first layout only.
        layouts = layouts[:1]
    overrides = dict(_parse_override(o) for o in args.override)
    cells = []
    for layout in layouts:
        protocol = load_protocol(protocol_name, args.dataset, layout=layout)
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(protocol["seeds"])
        chosen = [v for v in variants(protocol) if _belongs(v, kind, protocol)]
        for variant in chosen:
            train = {**variant["train"], **overrides}
            name = variant["name"]
            if overrides:
                extra = ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
                name = extra if name == "full" else f"{name},{extra}"
            for seed in seeds:
                cells.append(
                    Cell(
                        dataset=args.dataset,
                        protocol=protocol_name,
                        protocol_version=int(protocol["version"]),
                        seed=seed,
                        variant=name,
                        train=train,
                        gpus=int(protocol["layout"]["gpus"]),
                        layout=layout,
                        extra={"kind": variant["kind"], "overrides": {**variant["overrides"], **overrides}},
                    )
                )
    return cells


def _belongs(variant: dict[str, Any], kind: str, protocol: dict[str, Any]) -> bool:
    """Which variants a command runs: ``full`` always; the sweep also takes ablation cells that are sweep points.

    (``variants`` lists a run once, under its first name: random selection at the default budget is the
    ablation's ``selection=random`` and also a point of the sweep's random curve.)
    """
    if variant["kind"] == "full" or variant["kind"] == kind:
        return True
    if kind != "sweep":
        return False
    overrides = variant["overrides"]
    selection = overrides.get("selection", protocol["train"]["selection"])
    return set(overrides) <= {"selection", "budget"} and selection in protocol["sweep"]["selections"]


def _run_matrix(kind: str, argv: list[str]) -> int:
    args = _matrix_parser(kind).parse_args(_expand_aliases(argv))
    if not _check_data(args.dataset, args.data_dir):
        return 2
    from harness.environment import collect_environment
    from harness.report import write_report
    from harness.runs import run_cell

    cells = _build_cells(args, "full" if kind == "reproduce" else kind)
    environment = _environment(collect_environment)
    results = []
    for cell in cells:
        data_dir = (
            _synthetic_data_dir(args.data_dir, cell.train) if cell.dataset == "synthetic" else args.data_dir
        )
        results.append(run_cell(cell, _results_dir(), _logs_root(), data_dir, environment))
    report = write_report(_results_dir())
    _print_summary(results)
    log.info("report: %s", report)
    failed = [r for r in results if r.status == "failed"]
    return 1 if failed else 0


def _environment(collect) -> dict[str, Any]:
    environment = collect(REPO_ROOT)
    # Inside the container there is no .git: the image records the commit it was built from.
    if environment.get("git_commit") is None and os.environ.get("SPAL_GIT_COMMIT"):
        environment["git_commit"] = os.environ["SPAL_GIT_COMMIT"]
        environment["git_dirty"] = os.environ.get("SPAL_GIT_DIRTY", "unknown") == "true"
    return environment


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
