"""``make ci-regression``: the judgement on hand-made numbers, and a broken method failing the real check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.regression import BASELINE_PATH, judge, load_baseline, main

ROOT = Path(__file__).resolve().parents[2]
BASELINE = {
    "protocol": "synthetic-bench",
    "layout": "market1501",
    "seeds": [1, 2, 3],
    "full": {"mAP": 50.0, "mAP_tolerance": 4.0},
    "gain": {"min_mAP": 1.0},
    "justification": "hand-made",
}


def test_a_clear_gain_at_the_expected_level_passes() -> None:
    ok, rows = judge({1: 51.0, 2: 49.0, 3: 50.5}, {1: 45.0, 2: 46.0, 3: 44.0}, BASELINE)
    assert ok
    assert rows[0][2].startswith("+5.17") and rows[0][3] == "ok"
    assert rows[1][3] == "ok"


def test_no_gain_fails_even_at_a_good_level() -> None:
    # The labels stopped mattering: SPAL equals the run without labels on every seed.
    ok, rows = judge({1: 60.0, 2: 61.0, 3: 59.0}, {1: 60.0, 2: 61.0, 3: 59.0}, BASELINE)
    assert not ok
    assert rows[0][3] == "FAIL: the labels no longer help"
    assert rows[1][3] == "ok (better: the baseline could be raised)"


def test_a_drop_of_the_level_beyond_the_tolerance_fails() -> None:
    ok, rows = judge({1: 45.0, 2: 46.0, 3: 45.5}, {1: 40.0, 2: 41.0, 3: 40.0}, BASELINE)
    assert not ok
    assert rows[0][3] == "ok" and rows[1][3] == "FAIL: regression"


def test_a_missing_seed_fails() -> None:
    ok, rows = judge({1: 51.0, 2: 49.0}, {1: 45.0, 2: 46.0, 3: 44.0}, BASELINE)
    assert not ok and rows[0][3] == "FAIL: no result" and "[3]" in rows[0][2]


def test_the_committed_baseline_is_complete_and_its_tolerances_come_with_figures() -> None:
    baseline = load_baseline(BASELINE_PATH)
    assert baseline["protocol"] == "synthetic-bench"
    assert baseline["gain"]["min_mAP"] > 0
    assert baseline["full"]["mAP_tolerance"] > 0
    # Every tolerance is set from measurements that are written down beside it.
    assert baseline["measurements"], "the baseline must carry the figures that set its tolerances"


@pytest.mark.slow
def test_ci_regression_fails_a_method_that_ignores_its_constraints(tmp_path: Path) -> None:
    """Answers asked but never used (plain clustering, no support-pair loss): no gain, so the check fails.

    One seed keeps it short; the pretrained backbone is shared with ``make ci-regression`` through the data dir.
    """
    baseline = {**load_baseline(BASELINE_PATH), "seeds": [1]}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    env = {
        **os.environ,
        "SPAL_RESULTS_DIR": str(tmp_path / "results"),
        "SPAL_LOGS_DIR": str(tmp_path / "logs"),
    }
    data_dir = os.environ.get("DATA_DIR", str(ROOT / "data"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "ci-regression",
            "--baseline",
            str(path),
            "--data-dir",
            data_dir,
            "--override",
            "clustering=plain",
            "--override",
            "lambda_sp=0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "FAIL: the labels no longer help" in done.stdout
    assert "CI regression check FAILED" in done.stdout


def test_calibration_takes_three_standard_errors_of_the_cut_from_all_seeds() -> None:
    from harness.regression import calibrate

    full = {1: 50.0, 2: 52.0, 3: 48.0, 4: 51.0, 5: 49.0}  # mean 50, sd 1.5811
    zero = {1: 45.0, 2: 46.0, 3: 44.0, 4: 46.0, 5: 44.0}  # gains 5, 6, 4, 5, 5: mean 5, sd 0.7071
    numbers = calibrate(full, zero, cut=[1, 2, 3])
    width = 3 * (2 / 3) ** 0.5
    assert numbers["full"] == {"mAP": 50.0, "mAP_tolerance": round(width * 1.5811388, 2)}
    assert numbers["gain"]["min_mAP"] == round(5 - width * 0.7071068, 2)
    assert numbers["measured"]["gain_mean"] == 5.0 and numbers["measured"]["seeds"] == [1, 2, 3, 4, 5]
    # A weak, noisy gain never lowers the bar to 0: a method whose labels do nothing still fails.
    noisy = calibrate(full, {1: 50.0, 2: 48.0, 3: 49.0, 4: 52.0, 5: 47.0}, cut=[1, 2, 3])
    assert noisy["gain"]["min_mAP"] == 0.25


def test_calibration_widens_to_cover_a_second_draw_of_the_pipeline() -> None:
    from harness.regression import calibrate

    full = {1: 50.0, 2: 52.0, 3: 48.0, 4: 51.0, 5: 49.0}
    zero = {1: 45.0, 2: 46.0, 3: 44.0, 4: 46.0, 5: 44.0}
    alone = calibrate(full, zero, cut=[1, 2, 3, 4, 5])
    # Another pretraining: 2 points lower on average and noisier; its gain is smaller too.
    other_full = {1: 44.0, 2: 50.0, 3: 47.0, 4: 49.0, 5: 50.0}  # mean 48, sd 2.5495
    other_zero = {1: 42.0, 2: 46.0, 3: 45.0, 4: 46.0, 5: 46.0}
    both = calibrate(full, zero, cut=[1, 2, 3, 4, 5], other_draws=[(other_full, other_zero)])
    width = 3 * (2 / 5) ** 0.5
    assert both["full"]["mAP"] == alone["full"]["mAP"] == 50.0
    assert both["full"]["mAP_tolerance"] == round(max(width * 2.5495098, 2.0 + width * 2.5495098 / 2), 2)
    assert both["full"]["mAP_tolerance"] > alone["full"]["mAP_tolerance"]
    assert both["gain"]["min_mAP"] < alone["gain"]["min_mAP"]


def test_the_justification_states_the_figures_that_set_each_bound() -> None:
    from harness.regression import calibrate, justification

    full = {1: 50.0, 2: 52.0, 3: 48.0, 4: 51.0, 5: 49.0}
    zero = {1: 45.0, 2: 46.0, 3: 44.0, 4: 46.0, 5: 44.0}
    other = ({1: 44.0, 2: 50.0, 3: 47.0, 4: 49.0, 5: 50.0}, {1: 42.0, 2: 46.0, 3: 45.0, 4: 46.0, 5: 46.0})
    numbers = calibrate(full, zero, cut=[1, 2, 3, 4, 5], other_draws=[other])
    numbers["measured"]["machine"] = "AMD EPYC"
    text = justification(numbers)
    assert f"at least {numbers['gain']['min_mAP']:.2f}" in text
    assert "per seed +5.00, +6.00, +4.00, +5.00, +5.00" in text
    assert "+3.00 (sd 1.00) on the second draw" in text
    assert f"more than {numbers['full']['mAP_tolerance']:.2f} below 50.00" in text
    assert "mean 48.00, -2.00 from the matrix's; sd 2.55" in text
    assert "measured on AMD EPYC only" in text
    # Per-seed gains come from the runs' own figures: 47.4378 - 42.8545 is +4.58, although the rounded mAPs
    # (47.44, 42.85) would say +4.59.
    rounded = calibrate({**full, 3: 47.4378}, {**zero, 3: 42.8545}, cut=[1, 2, 3, 4, 5])
    rounded["measured"]["machine"] = "AMD EPYC"
    assert "+4.58" in justification(rounded) and "+4.59" not in justification(rounded)


def test_the_second_draw_runs_the_cut_with_another_pretraining_seed(monkeypatch, tmp_path: Path) -> None:
    import harness.matrix
    from harness.regression import SECOND_DRAW_PRETRAIN_SEED, second_draw
    from harness.runs import CellResult

    seen = []

    def fake_run_matrix(cells, data_dir, *, results, logs, env):
        seen.extend(cells)
        return [
            CellResult(
                c,
                tmp_path / f"run{i}",
                "ran",
                {"mAP": 40.0 + c.seed + (c.extra["kind"] == "full"), "pretrained": "w-abc.pth"},
            )
            for i, c in enumerate(cells)
        ]

    monkeypatch.setattr(harness.matrix, "run_matrix", fake_run_matrix)
    monkeypatch.setattr(
        harness.matrix, "environment", lambda: {"git_commit": "c0ffee", "cpu": "AMD EPYC", "torch": "2.14.1"}
    )
    baseline = {**BASELINE, "seeds": [1, 2]}
    record = second_draw(baseline, str(tmp_path), tmp_path / "draw.json")
    assert {c.pretrain["seed"] for c in seen} == {SECOND_DRAW_PRETRAIN_SEED}
    assert sorted((c.variant, c.seed) for c in seen) == [("budget=0", 1), ("budget=0", 2), ("full", 1), ("full", 2)]
    assert record["full_mAP"] == {"1": 42.0, "2": 43.0} and record["budget0_mAP"] == {"1": 41.0, "2": 42.0}
    assert record["pretrained"] == "w-abc.pth" and record["machine"] == "AMD EPYC"
    assert record["versions"]["torch"] == "2.14.1" and record["wall_time_s"] >= 0
    assert record["run_ids"] == ["run0", "run1", "run2", "run3"]
    assert json.loads((tmp_path / "draw.json").read_text()) == record


def _write_run(
    results: Path, run_id: str, variant: str, seed: int, version: int, commit: str, mAP: float, date: str
) -> None:
    run_dir = results / "runs" / "synthetic" / "synthetic-bench" / run_id
    run_dir.mkdir(parents=True)
    config = {
        "protocol": "synthetic-bench",
        "protocol_version": version,
        "dataset": "synthetic",
        "seed": seed,
        "variant": variant,
        "world_size": 1,
        "train": {"dataset": "synthetic", "synthetic_layout": "market1501", "arch": "resnet18", "seed": seed},
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "env.json").write_text(json.dumps({"git_commit": commit, "cpu": "AMD EPYC", "date": date}))
    (run_dir / "final.json").write_text(json.dumps({"mAP": mAP, "seed": seed, "variant": variant}))


def test_calibration_reads_one_run_set_of_the_protocols_current_version(monkeypatch, tmp_path: Path) -> None:
    from harness.protocols import load_protocol
    from harness.regression import matrix_groups

    current = int(load_protocol("synthetic-bench", "synthetic", layout="market1501")["version"])
    for seed in (1, 2):
        for variant, base in (("full", 50.0), ("budget=0", 45.0)):
            name = variant.replace("=", "-")
            # An older version and an older commit of the current version: neither may be pooled.
            _write_run(tmp_path, f"old-{name}-{seed}", variant, seed, current - 1, "b" * 40, base - 20, "2026-12-03")
            _write_run(tmp_path, f"v-{name}-{seed}", variant, seed, current, "c" * 40, base - 10, "2026-12-01")
            _write_run(tmp_path, f"new-{name}-{seed}", variant, seed, current, "d" * 40, base + seed, "2026-12-02")
    monkeypatch.setenv("SPAL_RESULTS_DIR", str(tmp_path))
    groups = matrix_groups({"protocol": "synthetic-bench", "layout": "market1501"})
    assert sorted(groups) == ["budget=0", "full"]
    assert sorted(r.run_id for r in groups["full"]) == ["new-full-1", "new-full-2"]
    assert {r.final["mAP"] for r in groups["budget=0"]} == {46.0, 47.0}


def test_calibration_refuses_a_second_draw_of_another_protocol_version(monkeypatch, tmp_path: Path, capsys) -> None:
    from harness.protocols import load_protocol

    current = int(load_protocol("synthetic-bench", "synthetic", layout="market1501")["version"])
    results = tmp_path / "results"
    for seed in (1, 2, 3):
        _write_run(results, f"full-{seed}", "full", seed, current, "d" * 40, 50.0 + seed, "2026-12-02")
        _write_run(results, f"zero-{seed}", "budget=0", seed, current, "d" * 40, 45.0 - seed, "2026-12-02")
    monkeypatch.setenv("SPAL_RESULTS_DIR", str(results))
    path = tmp_path / "ci" / "baseline.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**load_baseline(BASELINE_PATH), "seeds": [1, 2]}))
    draw = {"protocol_version": current - 1, "full_mAP": {"1": 40.0, "2": 41.0}, "budget0_mAP": {"1": 39.0, "2": 38.0}}
    (path.parent / "second-draw.json").write_text(json.dumps(draw))
    before = path.read_text()

    assert main(["--baseline", str(path), "--calibrate"]) == 2
    assert "run `python -m harness ci-regression --second-draw` again" in capsys.readouterr().err
    assert path.read_text() == before

    (path.parent / "second-draw.json").write_text(json.dumps({**draw, "protocol_version": current}))
    assert main(["--baseline", str(path), "--calibrate"]) == 0
    assert json.loads(path.read_text())["measurements"]["second_draw"] == "second-draw.json"
