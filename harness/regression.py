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

__all__ = [
    "BASELINE_PATH",
    "SECOND_DRAW_NAME",
    "calibrate",
    "judge",
    "justification",
    "load_baseline",
    "main",
    "matrix_groups",
    "second_draw",
]

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


def calibrate(
    full: Mapping[int, float],
    zero: Mapping[int, float],
    cut: list[int],
    floor: float = 1.0,
    gain_floor: float = 0.25,
    other_draws: list[tuple[Mapping[int, float], Mapping[int, float]]] = (),
) -> dict[str, Any]:
    """The baseline's numbers from a matrix measured over more seeds than the CI cut runs.

    Another CPU kind changes the order of floating-point sums, which flips some cluster assignments early on and
    then acts like a new draw of the seeds (the old ``ci`` protocol moved by 8.3 mAP at one seed between AMD and
    Intel, about one seed standard deviation, 7.9). So the tolerances are those of a new draw of ``len(cut)``
    seeds set against the baseline's own draw: three standard errors of the difference of two independent
    ``len(cut)``-seed means (``3 sqrt(2 / len(cut))`` standard deviations), from the standard deviations over all
    seeds.

    Args:
        full, zero: seed -> final mAP of full SPAL and of budget 0 over every seed of the matrix.
        cut: the seeds CI runs (a subset of both).
        floor: the smallest tolerance of the level, in mAP points.
        gain_floor: the smallest ``min_mAP``: a method whose answers change nothing has a gain of exactly 0
            (the runs are then identical), so any positive floor fails it.
        other_draws: ``(full, zero)`` of further draws of the whole pipeline (e.g. another pretraining seed);
            each widths is taken from the widest draw, and the level's tolerance also covers how far each draw's
            mean lies from the matrix's.

    Returns:
        ``{"full": {"mAP", "mAP_tolerance"}, "gain": {"min_mAP"}, "measured": {...}}``; ``min_mAP`` is the lower
        edge of the gain's three-standard-error band for the cut, and never below ``gain_floor``.
    """
    gains = paired_comparison(full, zero)
    level, level_sd = mean_std([full[s] for s in sorted(full)])
    # The baseline's mean is itself one draw: a new machine's mean differs from it by two draws' noise.
    width = 3.0 * (2.0 / len(cut)) ** 0.5
    cut_level, _ = mean_std([full[s] for s in cut])
    tolerance = max(floor, width * level_sd)
    gain_bound = gains.mean - width * gains.std
    draws = []
    for other_full, other_zero in other_draws:
        other_level, other_sd = mean_std([other_full[s] for s in sorted(other_full)])
        other_gains = paired_comparison(other_full, other_zero)
        tolerance = max(tolerance, width * other_sd, abs(other_level - cut_level) + width * other_sd / 2)
        gain_bound = min(gain_bound, other_gains.mean - width * other_gains.std)
        draws.append(
            {
                "full_mean": round(other_level, 2),
                "full_std": round(other_sd, 2),
                "gain_mean": round(other_gains.mean, 2),
                "gain_std": round(other_gains.std, 2),
            }
        )
    return {
        "full": {"mAP": round(cut_level, 2), "mAP_tolerance": round(tolerance, 2)},
        "gain": {"min_mAP": round(max(gain_floor, gain_bound), 2)},
        "measured": {
            "seeds": list(gains.seeds),
            "full_mAP": {str(s): round(full[s], 2) for s in gains.seeds},
            "budget0_mAP": {str(s): round(zero[s], 2) for s in gains.seeds},
            "full_mean": round(level, 2),
            "full_std": round(level_sd, 2),
            "gain_per_seed": {str(s): round(d, 2) for s, d in zip(gains.seeds, gains.differences)},
            "gain_mean": round(gains.mean, 2),
            "gain_std": round(gains.std, 2),
            "gain_95_interval": [round(gains.low, 2), round(gains.high, 2)],
            "cut_seeds": list(cut),
            "other_draws": draws,
        },
    }


def justification(numbers: Mapping[str, Any]) -> str:
    """The baseline's ``justification``: which measured figures set each bound (``numbers`` as
    :func:`calibrate` returns them, with ``measured.machine`` added)."""
    m = numbers["measured"]
    k = len(m["cut_seeds"])
    # From the unrounded runs (as the check prints them), not from the rounded mAPs above.
    per_seed = ", ".join(f"{m['gain_per_seed'][str(s)]:+.2f}" for s in m["seeds"])
    draws = m["other_draws"]
    draw_gain = "".join(f" and {d['gain_mean']:+.2f} (sd {d['gain_std']:.2f}) on the second draw" for d in draws)
    draw_level = "".join(
        f", and a second pretraining seed (mean {d['full_mean']:.2f}, {d['full_mean'] - m['full_mean']:+.2f} from the "
        f"matrix's; sd {d['full_std']:.2f})"
        for d in draws
    )
    return (
        "Two checks, neither of which depends on one CPU's rounding. (1) The gain: SPAL's mean paired mAP gain over "
        f"budget 0 on the same seeds and machine must be at least {numbers['gain']['min_mAP']:.2f}. Measured: "
        f"{m['gain_mean']:+.2f} (sd {m['gain_std']:.2f} over {len(m['seeds'])} seeds; per seed {per_seed}) on the "
        f"committed matrix{draw_gain}. The bar lies three standard errors of the difference of two {k}-seed means "
        f"(3 sqrt(2/{k}) sd: the baseline is one draw too) below the mean, on whichever draw puts it lower, and "
        "never under 0.25: a method "
        "whose answers change nothing (constraints ignored: plain clustering and no support-pair loss) gives "
        "exactly the runs of budget 0, a gain of 0.00, and fails; "
        "tests/harness/test_regression.py runs that case. (2) The level: full SPAL's mean mAP over the cut may not "
        f"fall more than {numbers['full']['mAP_tolerance']:.2f} below {numbers['full']['mAP']:.2f}. Another CPU kind "
        "changes the order of floating-point sums: it trains another pretrained file and flips cluster assignments, "
        "which acts like a new draw of the whole pipeline (the old ci protocol moved by 8.3 mAP at one seed between "
        "AMD EPYC and Intel Xeon, about one seed sd, 7.9, measured at commit 87a3a18). This protocol was measured "
        f"on {m.get('machine') or 'one machine kind'} only, so the cross-machine spread is taken from draws on one "
        f"machine: the seeds (sd {m['full_std']:.2f}){draw_level}. The tolerance is the largest of three standard "
        f"errors of the difference of two {k}-seed means at either sd (3 sqrt(2/{k}) sd) and the second draw's "
        "distance plus half that band. On one "
        "machine the cut reproduces the committed runs to the digit (the runs are deterministic), so a change there "
        "comes from the code."
    )


def matrix_groups(baseline: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{variant: runs}`` of the run set the report uses for the baseline's protocol (its current version) and
    layout: one commit, machine and world size, never pooled."""
    from harness.compare import group_runs, load_runs, split_run_sets
    from harness.matrix import results_dir
    from harness.protocols import load_protocol

    version = int(load_protocol(baseline["protocol"], "synthetic", layout=baseline["layout"])["version"])
    runs, _ = load_runs(results_dir())
    used, _ = split_run_sets(
        r
        for r in runs
        if r.protocol == baseline["protocol"] and r.layout == baseline["layout"] and r.version == version
    )
    chosen = [r for run_set in used.values() for r in run_set.runs if r.complete]
    return {key.variant: group for key, group in group_runs(chosen).items()}


def _description(baseline: Mapping[str, Any], measured: Mapping[str, Any], version: int) -> str:
    return (
        f"Baseline of `make ci-regression`: a cut of the {baseline['protocol']} protocol "
        f"(harness/protocols/{baseline['protocol']}.json, version {version}): {baseline['layout']} layout, seeds "
        f"{', '.join(str(s) for s in baseline['seeds'])}, full SPAL and budget 0. The numbers are computed by "
        "`python -m harness ci-regression --calibrate` from the committed matrix (results/runs/synthetic/"
        f"{baseline['protocol']}/, commit {str(measured.get('commit'))[:7]}, {measured.get('machine')}, world size 1, "
        f"CPU) and the second draw in results/ci/{SECOND_DRAW_NAME} (`--second-draw`)."
    )


def _recalibrate(path: Path, baseline: dict[str, Any]) -> int:
    from harness.compare import seed_values

    groups = matrix_groups(baseline)
    if "full" not in groups or "budget=0" not in groups:
        sys.stderr.write(f"calibrate: no complete full and budget=0 runs of {baseline['protocol']} under results/\n")
        return 2
    draw_path = path.parent / SECOND_DRAW_NAME
    version = groups["full"][0].version
    draws = []
    if draw_path.is_file():
        draw = json.loads(draw_path.read_text())
        if draw.get("protocol_version") != version:
            sys.stderr.write(
                f"calibrate: {draw_path} was drawn with {baseline['protocol']} version "
                f"{draw.get('protocol_version')}, the runs are version {version}: run `python -m harness "
                "ci-regression --second-draw` again first\n"
            )
            return 2
        draws.append(
            (
                {int(s): float(v) for s, v in draw["full_mAP"].items()},
                {int(s): float(v) for s, v in draw["budget0_mAP"].items()},
            )
        )
    numbers = calibrate(
        seed_values(groups["full"], "mAP"),
        seed_values(groups["budget=0"], "mAP"),
        list(baseline["seeds"]),
        other_draws=draws,
    )
    first = groups["full"][0]
    numbers["measured"].update(
        second_draw=str(draw_path.name) if draws else None,
        commit=(first.env or {}).get("git_commit"),
        machine=(first.env or {}).get("cpu"),
        run_ids=sorted(r.run_id for r in groups["full"] + groups["budget=0"]),
    )
    numbers["justification"] = justification(numbers)
    numbers["description"] = _description(baseline, numbers["measured"], version)
    updated = {**baseline, **numbers, "measurements": numbers.pop("measured")}
    updated.pop("measured", None)
    path.write_text(json.dumps(updated, indent=2) + "\n")
    sys.stdout.write(json.dumps(numbers, indent=2) + "\n")
    return 0


SECOND_DRAW_NAME = "second-draw.json"
#: The pretraining seed of the second draw (the protocol's own is another).
SECOND_DRAW_PRETRAIN_SEED = 1


def _cut_cells(baseline: Mapping[str, Any], layout: str | None, overrides: Mapping[str, Any]) -> list[Any]:
    from harness.matrix import build_cells

    return build_cells(
        "synthetic",
        "sweep",
        protocol=baseline["protocol"],
        seeds=baseline["seeds"],
        layouts=[layout or baseline["layout"]],
        overrides=dict(overrides),
        variants_wanted=["full", "budget=0"],
    )


def _by_kind(results: list[Any]) -> dict[str, dict[int, float]]:
    """``{"full": {seed: mAP}, "zero": {seed: mAP}}`` of the finished runs of a cut."""
    by_kind: dict[str, dict[int, float]] = {"full": {}, "zero": {}}
    for result in results:
        final = result.final or {}
        if final.get("mAP") is not None:
            kind = "full" if result.cell.extra["kind"] == "full" else "zero"
            by_kind[kind][result.cell.seed] = float(final["mAP"])
    return by_kind


def second_draw(baseline: Mapping[str, Any], data_dir: str, out: Path) -> dict[str, Any]:
    """Run the cut again with another pretraining seed (another pretrained file: a new draw of the whole
    pipeline, as another CPU kind gives) and write its record to ``out``.

    The runs go to a folder of their own under the logs root, not under ``results/runs`` (they would be another
    run set of the protocol there).
    """
    import dataclasses
    import datetime
    import time

    from harness.matrix import environment, logs_root, run_matrix

    cells = [
        dataclasses.replace(c, pretrain={**(c.pretrain or {}), "seed": SECOND_DRAW_PRETRAIN_SEED})
        for c in _cut_cells(baseline, None, {})
    ]
    folder = logs_root() / "second-draw"
    env = environment()
    started = time.perf_counter()
    results = run_matrix(cells, data_dir, results=folder / "results", logs=folder / "logs", env=env)
    wall = time.perf_counter() - started
    by_kind = _by_kind(results)
    # Every run names the weights it loaded; hashing the file again here would repeat run_matrix's work.
    weights = next((r.final or {}).get("pretrained") for r in results if (r.final or {}).get("pretrained"))
    record = {
        "description": (
            f"A second draw of the CI cut, pretraining included: the {baseline['protocol']} protocol with the "
            f"pretrain object's seed set to {SECOND_DRAW_PRETRAIN_SEED} (another pretrained file), seeds "
            f"{', '.join(str(s) for s in baseline['seeds'])}, full SPAL and budget 0. It stands in for another CPU "
            "kind, whose other floating-point kernels give another pretrained file and other cluster assignments: "
            "the spread the CI tolerances must absorb beyond the seeds. Made by `python -m harness ci-regression "
            "--second-draw`; final-epoch mAP in percent. The runs are not under results/runs (they would be "
            "another run set of the protocol)."
        ),
        "protocol": baseline["protocol"],
        "protocol_version": cells[0].protocol_version,
        "layout": baseline["layout"],
        "synthetic": cells[0].train.get("synthetic"),
        "pretrain_seed": SECOND_DRAW_PRETRAIN_SEED,
        "pretrained": weights,
        "git_commit": env.get("git_commit"),
        "machine": env.get("cpu"),
        "versions": {k: env.get(k) for k in ("python", "torch", "torchvision", "numpy", "faiss")},
        "wall_time_s": round(wall, 1),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "full_mAP": {str(s): v for s, v in sorted(by_kind["full"].items())},
        "budget0_mAP": {str(s): v for s, v in sorted(by_kind["zero"].items())},
        "run_ids": sorted(r.run_dir.name for r in results),
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    from tabulate import tabulate

    from harness.flags import add_run_flags
    from harness.matrix import parse_override, run_matrix

    parser = argparse.ArgumentParser(
        prog="python -m harness ci-regression",
        description="run the baseline's cut of its protocol and judge SPAL's paired gain and level",
    )
    parser.add_argument("--baseline", type=Path, default=BASELINE_PATH)
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="instead of checking: recompute the baseline's numbers from the newest complete set of runs of its "
        "protocol under results/ (make ablation PROTOCOL=synthetic-bench) and rewrite the baseline file",
    )
    parser.add_argument(
        "--second-draw",
        action="store_true",
        help=f"instead of checking: run the cut with pretraining seed {SECOND_DRAW_PRETRAIN_SEED} and write "
        f"{SECOND_DRAW_NAME} beside the baseline (the second draw --calibrate reads)",
    )
    add_run_flags(parser, "synthetic layout (default: the baseline's)")
    args = parser.parse_args(argv)
    baseline = load_baseline(args.baseline)
    if args.calibrate:
        return _recalibrate(args.baseline, baseline)
    if args.second_draw:
        second_draw(baseline, args.data_dir, args.baseline.parent / SECOND_DRAW_NAME)
        return 0
    cells = _cut_cells(baseline, args.layouts, dict(parse_override(o) for o in args.override))
    by_kind = _by_kind(run_matrix(cells, args.data_dir))
    ok, rows = judge(by_kind["full"], by_kind["zero"], baseline)
    sys.stdout.write(tabulate(rows, headers=["check", "expected", "measured", "verdict"], tablefmt="github") + "\n")
    sys.stdout.write(("CI regression check passed" if ok else "CI regression check FAILED: see the table") + "\n")
    return 0 if ok else 1
