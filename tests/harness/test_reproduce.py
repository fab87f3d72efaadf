"""``make reproduce`` end to end on the smoke protocol: data check, resumable cells, results files, regression."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.matrix import build_cells, synthetic_data_dir
from harness.runs import run_cell

ROOT = Path(__file__).resolve().parents[2]


def _harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)


@pytest.mark.parametrize("dataset", ["market1501", "msmt17"])
def test_missing_data_prints_the_tree_and_fails_fast(tmp_path: Path, dataset: str) -> None:
    start = time.monotonic()
    done = _harness("reproduce", f"DATASET={dataset}", "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert time.monotonic() - start < 20
    assert "Traceback" not in done.stderr
    expected = {"market1501": ["Market-1501-v15.09.15", "bounding_box_train", "query", "bounding_box_test"],
                "msmt17": ["MSMT17_V1", "list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt"]}
    for name in expected[dataset]:
        assert name in done.stderr


def _smoke_cell(tmp_path: Path):
    cells = build_cells("synthetic", "full", protocol="smoke", seeds=[1], layouts=["market1501"])
    assert len(cells) == 1
    return cells[0]


ENV = {"git_commit": "0" * 40, "git_dirty": False, "torch": "x"}


@pytest.mark.slow
def test_cell_runs_then_is_complete_then_resumes_without_its_final_json(tmp_path: Path) -> None:
    cell = _smoke_cell(tmp_path)
    data_dir = synthetic_data_dir(str(tmp_path / "data"), cell.train)
    results, logs = tmp_path / "results", tmp_path / "logs"
    first = run_cell(cell, results, logs, data_dir, ENV)
    assert first.status == "ran", first.error
    run_dir = first.run_dir
    assert run_dir.parent == results / "runs" / "synthetic" / "smoke"
    for name in ("config.json", "env.json", "metrics.jsonl", "final.json", "train.log"):
        assert (run_dir / name).is_file(), name
    final = json.loads((run_dir / "final.json").read_text())
    for key in ("mAP", "rank1", "rank5", "rank10", "queries_spent", "budget", "pairs_known"):
        assert isinstance(final[key], (int, float)), key
    assert final["synthetic"] is True and final["seed"] == 1
    assert json.loads((run_dir / "env.json").read_text())["git_commit"] == "0" * 40

    again = run_cell(cell, results, logs, data_dir, ENV)
    assert again.status == "complete" and again.final == final

    # An interrupted run: its checkpoint is there, its final.json not yet.
    (run_dir / "final.json").unlink()
    resumed = run_cell(cell, results, logs, data_dir, ENV)
    assert resumed.status == "resumed"
    assert resumed.final["mAP"] == final["mAP"]
