"""Real torchrun runs (gloo, CPU): ranks stay in sync and W processes compute what one process computes, with
BatchNorm over 16 images in both (the default layout at every world size, SPEC 2); 3 processes are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_helpers import TINY_TRAIN_ARGS, spal_env

COMMON = [*TINY_TRAIN_ARGS, *["--epochs", "1", "--iters", "2", "--seed", "3", "-b", "64"]]


def _command(args: list[str], logs: Path, nproc: int) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return (launcher if nproc > 1 else [sys.executable]) + ["-m", "spal", "train", *args, "--logs-dir", str(logs)]


def _train(args: list[str], logs: Path, nproc: int = 1) -> dict:
    proc = subprocess.run(_command(args, logs, nproc), env=spal_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(logs / "checkpoint.pth", map_location="cpu", weights_only=False)


def _metrics(logs: Path) -> list[dict]:
    return [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [2, 4])
def test_torchrun_matches_one_process_with_groups_of_16(data_dir: Path, tmp_path_factory, nproc: int) -> None:
    tmp_path = tmp_path_factory.mktemp(f"ddp{nproc}")
    args = [*COMMON, "--data-dir", str(data_dir)]
    multi = _train(args, tmp_path / "multi", nproc=nproc)
    single = _train(args, tmp_path / "single")  # 4 groups of 16 on one process: no flag needed
    for logs, world in ((tmp_path / "multi", nproc), (tmp_path / "single", 1)):
        final = json.loads((logs / "final.json").read_text())
        assert (final["world_size"], final["bn_batch"]) == (world, 16)

    multi_metrics, single_metrics = _metrics(tmp_path / "multi"), _metrics(tmp_path / "single")
    # Ranks stayed in sync: every rank's parameters and memory gave the same checksum.
    assert multi_metrics[0]["rank_spread"] == 0.0
    # The label phase (rank 0, broadcast) saw the same memory, so it found the same clusters and asked the same.
    for key in ("num_clusters", "num_outliers", "queries_spent", "pairs_known"):
        assert multi_metrics[0][key] == single_metrics[0][key], key
    # Evaluation: each rank extracted a share of query and gallery, rank 0 gathered them; the numbers match the
    # single process's up to the last decimals of the features.
    for key in ("mAP", "rank1", "num_valid_queries"):
        assert multi_metrics[0][key] == pytest.approx(single_metrics[0][key], abs=2.0), key
    assert multi["graph"] == single["graph"]
    # The same images, augmentation, BatchNorm groups and loss normalisation give the same steps, up to the order
    # of floating-point sums in the gradient all-reduce. Adam turns that rounding into at most about lr per step
    # for weights whose gradient is ~0 (it divides by sqrt(v)), so the bound is 2 lr per step at the worst
    # element, and the typical element must agree far more closely.
    lr, steps = 3.5e-4, 2
    for name, value in single["model"].items():
        if value.is_floating_point():
            diff = (multi["model"][name] - value).abs()
            assert diff.max() <= 2 * lr * steps, name
            assert diff.mean() <= lr / 20, name
    torch.testing.assert_close(multi["memory"], single["memory"], atol=1e-3, rtol=0)
    assert not (tmp_path / "multi" / "checkpoint-rank1.pth").exists()
    assert sorted(p.name for p in (tmp_path / "multi").glob("*.pth")) == ["checkpoint.pth"]


@pytest.mark.slow
def test_three_processes_are_refused_before_any_work(data_dir: Path, tmp_path: Path) -> None:
    logs = tmp_path / "three"
    command = _command([*COMMON, "--data-dir", str(data_dir)], logs, nproc=3)
    proc = subprocess.run(command, env=spal_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    refusals = [line for line in proc.stderr.splitlines() if "cannot split a global batch of 64" in line]
    assert len(refusals) == 1 and "run on 1, 2 or 4 processes" in refusals[0]
    assert not (logs / "checkpoint.pth").exists() and not (logs / "metrics.jsonl").exists()
    assert "decode train" not in proc.stderr and "init memory" not in proc.stderr
