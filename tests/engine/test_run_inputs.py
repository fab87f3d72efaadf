"""Issue 14, cases 1, 3, 4 and 5: what `spal train` checks before it writes, what --resume may change, and the
leftovers of a killed run (stale temporary files, truncated checkpoints, a used logs dir)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_helpers import TINY_TRAIN_ARGS, spal_env
from PIL import Image

from spal.data import ImageLoadError, verify_images
from spal.engine.checkpoint import remove_stale_temps, save_checkpoint

ARGS = [*TINY_TRAIN_ARGS, "--iters", "1", "--seed", "3"]


def _spal(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spal", *args], cwd=cwd, env=spal_env(), capture_output=True, text=True, timeout=600
    )


def _train(data_dir: Path, logs: Path, *extra: str) -> subprocess.CompletedProcess:
    return _spal("train", *ARGS, "--data-dir", str(data_dir), "--logs-dir", str(logs), *extra, cwd=logs.parent)


def _error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if " ERROR " in line]


@pytest.fixture(scope="module")
def finished_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch run of the tiny set, with eps 0.7 and budget 2n (TINY_TRAIN_ARGS)."""
    logs = tmp_path_factory.mktemp("run") / "logs"
    done = _train(data_dir, logs, "--epochs", "1")
    assert done.returncode == 0, done.stderr
    return logs


def _copy_run(run: Path, tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    shutil.copytree(run, logs)
    return logs


def test_resume_refuses_other_settings_in_one_line(finished_run: Path, data_dir: Path, tmp_path: Path) -> None:
    logs = _copy_run(finished_run, tmp_path)
    before = (logs / "checkpoint.pth").read_bytes()
    done = _train(data_dir, logs, "--resume", "--epochs", "2", "--eps", "0.3", "--budget", "0", "--lr", "0.1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = _error_lines(done)
    for change in ("eps 0.7 -> 0.3", "budget '2n' -> '0'", "lr 0.00035 -> 0.1"):
        assert change in line
    assert "epochs" not in line.split(";")[0], "a longer run is allowed, not a difference"
    assert (logs / "checkpoint.pth").read_bytes() == before


def test_resume_applies_and_records_the_settings_that_may_change(
    finished_run: Path, data_dir: Path, tmp_path: Path
) -> None:
    logs = _copy_run(finished_run, tmp_path)
    # Flags left out keep the run's values (eps 0.7 here, not the synthetic default 0.45): only what is given
    # is compared with the checkpoint.
    done = _spal(
        "train", "-d", "synthetic", "--data-dir", str(data_dir), "--logs-dir", str(logs), "--resume",
        "--epochs", "2", "-j", "1", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ckpt = torch.load(logs / "checkpoint.pth", weights_only=False)
    assert ckpt["epoch"] == 1
    assert (ckpt["config"]["epochs"], ckpt["config"]["workers"], ckpt["config"]["eps"]) == (2, 1, 0.7)
    assert "epochs 1 -> 2" in done.stderr and "workers 0 -> 1" in done.stderr


def test_a_failed_command_creates_no_file(tmp_path: Path) -> None:
    done = _spal("train", "-d", "market1501", "--data-dir", "/nonexistent", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    done = _spal("train", "--eps", "-3", "--temperature", "0", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = _error_lines(done)
    assert "eps = -3.0 must be > 0" in line and "temperature = 0.0 must be > 0" in line
    assert list(tmp_path.iterdir()) == [], "no logs/train.log, no generated data set"


@pytest.mark.parametrize("subset", ["bounding_box_train", "bounding_box_test", "query"])
def test_a_corrupt_image_stops_the_run_before_training(data_dir: Path, tmp_path: Path, subset: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    bad = sorted((data / "market1501").glob(f"*/{subset}/*.jpg"))[-1]
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    logs = tmp_path / "logs"
    done = _train(data, logs, "--epochs", "1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = _error_lines(done)
    assert str(bad) in line and "truncated" in line.lower()
    assert not logs.exists(), "nothing trained, nothing written"


def test_verify_images_names_the_bad_file(tmp_path: Path) -> None:
    good = []
    for i in range(20):
        path = tmp_path / f"{i:02d}.png"
        Image.new("RGB", (8, 16), (i, 0, 0)).save(path)
        good.append(str(path))
    verify_images(good, threads=4, progress=False)
    (tmp_path / "07.png").write_bytes((tmp_path / "07.png").read_bytes()[:40])
    (tmp_path / "12.png").write_bytes(b"not an image")
    with pytest.raises(ImageLoadError, match="07.png"):
        verify_images(good, threads=4, progress=False)


def test_a_truncated_checkpoint_is_one_error_line(finished_run: Path, data_dir: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "checkpoint.pth"
    data = (finished_run / "checkpoint.pth").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    done = _spal("evaluate", "--data-dir", str(data_dir), "--resume", str(truncated), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = _error_lines(done)
    assert str(truncated) in line and "truncated or corrupt" in line
    # The same checkpoint left by a killed run: resuming it is one line too, and writes nothing.
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(truncated, logs / "checkpoint.pth")
    done = _train(data_dir, logs, "--resume", "--epochs", "2")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = _error_lines(done)
    assert line.split("ERROR spal: ")[1].startswith(f"cannot read checkpoint {logs / 'checkpoint.pth'}")
    assert sorted(p.name for p in logs.iterdir()) == ["checkpoint.pth"]


def test_resume_removes_what_a_killed_save_left(finished_run: Path, data_dir: Path, tmp_path: Path) -> None:
    logs = _copy_run(finished_run, tmp_path)
    stale = logs / ".checkpoint.pth.k9xyz.tmp"
    stale.write_bytes(b"\0" * 4096)  # what a kill -9 inside torch.save leaves
    done = _train(data_dir, logs, "--resume", "--epochs", "1")
    assert done.returncode == 0, done.stderr
    assert not stale.exists()
    assert (logs / "checkpoint.pth").is_file()


def test_remove_stale_temps_keeps_the_files_themselves(tmp_path: Path) -> None:
    save_checkpoint({"x": torch.zeros(2)}, tmp_path / "checkpoint.pth")
    (tmp_path / ".metrics.jsonl.abc.tmp").write_text("{")
    (tmp_path / "notes.tmp").write_text("mine")
    assert [p.name for p in remove_stale_temps(tmp_path)] == [".metrics.jsonl.abc.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth", "notes.tmp"]


def test_a_fresh_run_in_a_used_logs_dir_is_refused(finished_run: Path, data_dir: Path, tmp_path: Path) -> None:
    logs = _copy_run(finished_run, tmp_path)
    answers = (logs / "annotations.jsonl").read_text()
    done = _train(data_dir, logs, "--epochs", "1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = _error_lines(done)
    assert "already holds a run" in line and "annotations.jsonl" in line and "--resume" in line
    assert (logs / "annotations.jsonl").read_text() == answers
    # Only the answer log of a run killed in its first epoch: still a used dir.
    for name in ("checkpoint.pth", "metrics.jsonl", "final.json"):
        (logs / name).unlink()
    assert _train(data_dir, logs, "--epochs", "1").returncode == 2


# Issue 14, case 7: what a resumed run says, what evaluate labels, what torchrun prints.
def test_a_resumed_epoch_says_it_replayed_the_logged_answers(
    finished_run: Path, data_dir: Path, tmp_path: Path
) -> None:
    straight = tmp_path / "straight"
    assert _train(data_dir, straight, "--epochs", "2").returncode == 0
    # A run killed in its second epoch after every answer was logged: epoch 0's checkpoint, both epochs' answers.
    logs = _copy_run(finished_run, tmp_path)
    shutil.copy(straight / "annotations.jsonl", logs / "annotations.jsonl")
    done = _train(data_dir, logs, "--resume", "--epochs", "2")
    assert done.returncode == 0, done.stderr
    [line] = [x for x in done.stderr.splitlines() if "selection (dus)" in x]
    assert "asked 0 pairs, replayed " in line and " answers from the log" in line
    assert (logs / "annotations.jsonl").read_text() == (straight / "annotations.jsonl").read_text()


def test_evaluate_labels_the_count_as_a_count(finished_run: Path, data_dir: Path, tmp_path: Path) -> None:
    checkpoint = str(finished_run / "checkpoint.pth")
    done = _spal("evaluate", "--data-dir", str(data_dir), "--resume", checkpoint, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in done.stdout.splitlines()[2:]}
    assert rows["num_valid_queries (count)"].isdigit()
    assert {"mAP (%)", "rank1 (%)"} <= set(rows)
    assert "value (%)" not in done.stdout


def test_torchrun_prints_one_final_line_and_no_warning(data_dir: Path, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "spal", "train",
        *ARGS, "--epochs", "1", "--data-dir", str(data_dir), "--logs-dir", str(tmp_path / "logs"),
        # The tiny batch cannot give each of 2 processes a group of 16 images: say how to normalise it.
        "--bn-groups", "1",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=spal_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert output.count("final: ") == 1
    assert "Warning" not in output and "faiss.loader" not in output
