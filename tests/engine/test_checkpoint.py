"""Checkpoints: a snapshot shares nothing with the live state, background writes stay atomic and ordered."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from spal.engine import checkpoint
from spal.engine.checkpoint import BackgroundCheckpointer, load_checkpoint, snapshot


def test_snapshot_is_a_deep_host_copy() -> None:
    weight = torch.arange(6.0).reshape(2, 3)
    table = np.arange(4)
    answers = [[0, 1, True]]
    state = {"model": {"w": weight}, "graph": {"answers": answers}, "table": table, "pair": (weight, 3)}
    copied = snapshot(state)
    weight.add_(100)  # training goes on with the originals
    table[:] = -1
    answers.append([2, 3, False])
    assert torch.equal(copied["model"]["w"], torch.arange(6.0).reshape(2, 3))
    assert copied["table"].tolist() == [0, 1, 2, 3]
    assert copied["graph"]["answers"] == [[0, 1, True]]
    assert isinstance(copied["pair"], tuple) and copied["pair"][1] == 3
    assert copied["model"]["w"].device.type == "cpu"


def test_background_writes_land_in_order_and_the_caller_waits_only_for_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real_save = checkpoint.save_checkpoint

    def slow_save(state, path):
        release.wait(10)
        return real_save(state, path)

    monkeypatch.setattr(checkpoint, "save_checkpoint", slow_save)
    path = tmp_path / "checkpoint.pth"
    writer = BackgroundCheckpointer()
    weight = torch.zeros(3)
    # A whole checkpoint (load_checkpoint refuses a file without model, config and epoch).
    writer.submit({"epoch": 0, "config": {}, "model": {"w": weight}}, path)
    assert not path.exists()  # submit returned while the write still waits
    weight.fill_(7.0)  # the next epoch changes the weights: the queued checkpoint keeps epoch 0's
    release.set()
    writer.submit({"epoch": 1, "config": {}, "model": {"w": weight}}, path)  # waits for epoch 0's write first
    writer.close()
    saved = load_checkpoint(path)
    assert saved["epoch"] == 1 and saved["model"]["w"].tolist() == [7.0, 7.0, 7.0]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]  # no temporary file left behind


def test_a_failed_background_write_is_raised_by_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_save(state, path):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_checkpoint", failing_save)
    writer = BackgroundCheckpointer()
    writer.submit({"epoch": 0}, tmp_path / "checkpoint.pth")
    with pytest.raises(OSError, match="disk full"):
        writer.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_snapshot_copies_cuda_tensors_to_the_host() -> None:
    live = torch.ones(4, device="cuda")
    copied = snapshot({"memory": live})
    live.zero_()
    assert copied["memory"].device.type == "cpu" and copied["memory"].tolist() == [1.0] * 4


def test_a_background_write_leaves_no_temporary_file_and_stale_ones_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pth"
    stale = tmp_path / ".checkpoint.pth.abc123.tmp"  # what a kill during an earlier write leaves
    stale.write_bytes(b"half a checkpoint")
    writer = BackgroundCheckpointer()
    writer.submit({"epoch": 0, "config": {}, "model": {"w": torch.ones(2)}}, path)
    writer.close()
    assert checkpoint.remove_stale_temps(tmp_path) == [stale]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]
    assert load_checkpoint(path)["epoch"] == 0
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
