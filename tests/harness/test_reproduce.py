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
from harness.runs import Cell, run_cell
from spal.engine.config import RUNTIME_KEYS

ROOT = Path(__file__).resolve().parents[2]


def _harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )


@pytest.mark.parametrize("dataset", ["market1501", "msmt17"])
def test_missing_data_prints_the_tree_and_fails_fast(tmp_path: Path, dataset: str) -> None:
    start = time.monotonic()
    done = _harness("reproduce", f"DATASET={dataset}", "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert time.monotonic() - start < 20
    assert "Traceback" not in done.stderr
    expected = {
        "market1501": ["Market-1501-v15.09.15", "bounding_box_train", "query", "bounding_box_test"],
        "msmt17": ["MSMT17_V1", "list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt"],
    }
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
    # The layout it trained with (SPEC 8): one process, BatchNorm over the smoke protocol's 16 images.
    assert (final["world_size"], final["bn_batch"]) == (1, 16)
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["world_size"], config["bn_groups"], config["bn_batch"]) == (1, 1, 16)
    # Random weights on purpose (the smoke protocol says "none"), recorded as such everywhere.
    env = json.loads((run_dir / "env.json").read_text())
    for record in (final, config, env):
        assert record["pretrained"] is None and record["pretrained_sha256"] is None
    assert json.loads((run_dir / "env.json").read_text())["git_commit"] == "0" * 40

    again = run_cell(cell, results, logs, data_dir, ENV)
    assert again.status == "complete" and again.final == final

    # An interrupted run: its checkpoint is there, its final.json not yet.
    (run_dir / "final.json").unlink()
    resumed = run_cell(cell, results, logs, data_dir, ENV)
    assert resumed.status == "resumed"
    assert resumed.final["mAP"] == final["mAP"]


def test_paper_reproduce_without_weights_stops_before_any_work(tmp_path: Path) -> None:
    root = tmp_path / "data" / "market1501" / "Market-1501-v15.09.15"
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (root / folder).mkdir(parents=True)
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"
    env = {
        "TORCH_HOME": str(tmp_path / "torch-home"),
        "SPAL_RESULTS_DIR": str(tmp_path / "results"),
        "SPAL_LOGS_DIR": str(tmp_path / "logs"),
    }
    done = _harness("reproduce", "DATASET=market1501", "--data-dir", str(tmp_path / "data"), env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "resnet50-0676ba61.pth" in x]
    assert str(hub) in line and "https://download.pytorch.org/models/resnet50-0676ba61.pth" in line
    assert "PRETRAINED=PATH" in line
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
    # A given file that is not there is named too (PRETRAINED=PATH, as make reproduce passes it).
    done = _harness(
        "reproduce",
        "DATASET=market1501",
        "--data-dir",
        str(tmp_path / "data"),
        f"PRETRAINED={tmp_path / 'w' / 'resnet50-0676ba61.pth'}",
        env=env,
    )
    assert done.returncode == 2 and str(tmp_path / "w" / "resnet50-0676ba61.pth") in done.stderr


def test_the_run_id_names_weights_by_file_not_folder() -> None:
    def cell(pretrained):
        (only,) = build_cells("market1501", "full", protocol="paper", seeds=[1], pretrained=pretrained)
        return only

    here, there = cell("/a/resnet50-0676ba61.pth"), cell("/b/resnet50-0676ba61.pth")
    hub, random = cell(None), cell("none")
    assert here.train["pretrained"] == "/a/resnet50-0676ba61.pth" and hub.train["pretrained"] == "imagenet"
    assert here.variant == hub.variant == "full"  # where the file lies is not a variant
    assert here.run_id("c" * 40) == there.run_id("c" * 40)
    assert len({here.run_id("c" * 40), hub.run_id("c" * 40), random.run_id("c" * 40)}) == 3


COMMITTED_RUNS = sorted((ROOT / "results" / "runs").rglob("config.json"))


def _committed_cell(config: dict) -> Cell:
    """The cell that made a committed run, from its ``config.json``. run_cell writes the run's seed into
    ``train``; the cell's ``train`` held the protocol's (1 in every protocol of the committed runs)."""
    return Cell(
        dataset=config["dataset"],
        protocol=config["protocol"],
        protocol_version=config["protocol_version"],
        seed=config["seed"],
        variant=config["variant"],
        train={**config["train"], "seed": 1},
        layout=config["layout"],
    )


def test_committed_runs_keep_their_ids() -> None:
    """The run id hashes every setting but the runtime ones (spal.engine.config.RUNTIME_KEYS): changing that
    split would orphan every committed run, which a re-run would then start again under a new id."""
    assert COMMITTED_RUNS, "no committed runs under results/runs/"
    for path in COMMITTED_RUNS:
        config = json.loads(path.read_text())
        commit = json.loads((path.parent / "env.json").read_text())["git_commit"]
        assert _committed_cell(config).run_id(commit) == config["run_id"] == path.parent.name, path


def test_runtime_settings_stay_out_of_the_run_id_and_the_others_in() -> None:
    path = ROOT / "results/runs/synthetic/ci/market1501-budget-0-seed1-313fcf69-6991385/config.json"
    cell = _committed_cell(json.loads(path.read_text()))
    assert cell.run_id(json.loads((path.parent / "env.json").read_text())["git_commit"]) == path.parent.name
    moved = {"data_dir": "/elsewhere", "logs_dir": "/other/logs", "workers": 8, "device": "cuda"}
    assert set(moved) == set(RUNTIME_KEYS)
    assert Cell(**{**cell.__dict__, "train": {**cell.train, **moved}}).config_hash("c") == cell.config_hash("c")
    for key, value in {"eps": 0.31, "iters": 21, "annotation_timeout": 60.0, "precision": "fp32"}.items():
        other = Cell(**{**cell.__dict__, "train": {**cell.train, key: value}})
        assert other.config_hash("c") != cell.config_hash("c"), key


@pytest.mark.parametrize(
    ("gpus", "layout"), [(0, (1, 4, 16)), (1, (1, 4, 16)), (2, (2, 2, 16)), (4, (4, 1, 16)), (8, (4, 1, 16))]
)
def test_paper_cells_keep_batchnorm_over_16_images_at_every_world_size(gpus: int, layout: tuple) -> None:
    from harness.runs import process_layout

    (cell,) = build_cells("market1501", "full", protocol="paper", seeds=[1])
    assert process_layout(cell, world_size=gpus) == layout


def test_three_gpus_are_refused_and_the_ci_protocol_keeps_its_one_group(tmp_path: Path) -> None:
    from harness.runs import process_layout
    from spal.models import BatchNormLayoutError

    (cell,) = build_cells("market1501", "full", protocol="paper", seeds=[1])
    with pytest.raises(BatchNormLayoutError, match="run on 1, 2 or 4 processes"):
        process_layout(cell, world_size=3)
    with pytest.raises(BatchNormLayoutError):
        run_cell(cell, tmp_path / "results", tmp_path / "logs", str(tmp_path), ENV, world_size=3)
    assert not (tmp_path / "results").exists()  # refused before any file was written
    (cell,) = build_cells("synthetic", "full", protocol="ci", seeds=[1], layouts=["market1501"])
    assert process_layout(cell, world_size=4) == (1, 1, 32)  # a one-GPU protocol runs on one process
