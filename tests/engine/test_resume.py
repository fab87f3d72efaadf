"""Kill ``spal train`` mid-run, resume it, and get exactly the uninterrupted run's numbers and answers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from engine_helpers import TINY_TRAIN_ARGS, spal_env

ARGS = [*TINY_TRAIN_ARGS, *["--epochs", "3", "--iters", "3", "--seed", "2"]]


def _command(data_dir: Path, logs: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "spal",
        "train",
        *ARGS,
        "--data-dir",
        str(data_dir),
        "--logs-dir",
        str(logs),
        *extra,
    ]


def _answers(logs: Path) -> list[tuple[int, int, bool]]:
    lines = (logs / "annotations.jsonl").read_text().splitlines()
    return [(r["a"], r["b"], r["same"]) for r in map(json.loads, lines)]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_numbers(data_dir: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    subprocess.run(_command(data_dir, straight), env=spal_env(), check=True, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _command(data_dir, killed), env=spal_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not (killed / "checkpoint.pth").exists():
        assert proc.poll() is None, "training ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # The first epoch's checkpoint is in place: the second epoch is under way (its answers may be logged).
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_epoch = torch.load(killed / "checkpoint.pth", weights_only=False)["epoch"]
    assert interrupted_epoch < 2
    answers_before_resume = _answers(killed)

    resumed = subprocess.run(
        _command(data_dir, killed, "--resume"), env=spal_env(), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr

    final_a = json.loads((straight / "final.json").read_text())
    final_b = json.loads((killed / "final.json").read_text())
    for key in ("mAP", "mINP", "rank1", "rank5", "rank10", "queries_spent", "pairs_known", "budget"):
        assert final_a[key] == final_b[key], key
    metrics_a = (straight / "metrics.jsonl").read_text().splitlines()
    metrics_b = (killed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["mAP"] for m in metrics_a] == [json.loads(m)["mAP"] for m in metrics_b]
    # No answer lost, none asked twice: the log holds the uninterrupted run's answers, each once, and every answer
    # logged before the kill is among them.
    assert _answers(killed) == _answers(straight)
    assert set(answers_before_resume) <= set(_answers(killed))
    assert len(set(_answers(killed))) == len(_answers(killed))
    ckpt_a = torch.load(straight / "checkpoint.pth", weights_only=False)
    ckpt_b = torch.load(killed / "checkpoint.pth", weights_only=False)
    for name, value in ckpt_a["model"].items():
        torch.testing.assert_close(ckpt_b["model"][name], value, rtol=0, atol=0, msg=name)
    assert ckpt_a["graph"] == ckpt_b["graph"]


@pytest.mark.slow
def test_finished_run_is_not_retrained(data_dir: Path, tmp_path: Path) -> None:
    logs = tmp_path / "done"
    subprocess.run(_command(data_dir, logs), env=spal_env(), check=True, capture_output=True, timeout=600)
    before = (logs / "checkpoint.pth").stat().st_mtime_ns
    again = subprocess.run(
        _command(data_dir, logs, "--resume"), env=spal_env(), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert (logs / "checkpoint.pth").stat().st_mtime_ns == before
