"""What final.json records about how a run trained (SPEC 8): world size, BatchNorm group size, weight file."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch
from engine_helpers import TINY_TRAIN_ARGS, spal_env

from spal.models.resnet import resnet18_trunk


def _train(args: list[str], logs: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "spal",
        "train",
        *TINY_TRAIN_ARGS,
        "--epochs",
        "1",
        "--iters",
        "1",
        *args,
        "--logs-dir",
        str(logs),
    ]
    proc = subprocess.run(command, env=spal_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((logs / "final.json").read_text())


def test_final_json_names_the_weight_file_and_the_batchnorm_layout(data_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "resnet18-imagenet-like.pth"
    torch.save(resnet18_trunk().state_dict(), weights)
    final = _train(["--data-dir", str(data_dir), "--pretrained", str(weights), "-b", "32"], tmp_path / "given")
    assert final["pretrained"] == "resnet18-imagenet-like.pth"
    assert final["pretrained_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (final["world_size"], final["bn_batch"]) == (1, 16)  # -b 32 alone: 2 groups of 16
    # The weights were loaded: the first convolution starts from the file's values.
    ckpt_conv = torch.load(tmp_path / "given" / "checkpoint.pth", weights_only=False)["model"]["backbone.conv1.weight"]
    start = torch.load(weights)["conv1.weight"]
    assert (ckpt_conv - start).abs().max() < 1e-2  # one Adam step of lr 3.5e-4 moves it by about lr

    final = _train(
        ["--data-dir", str(data_dir), "--pretrained", "none", "--bn-groups", "1", "-b", "32"], tmp_path / "random"
    )
    assert final["pretrained"] is None and final["pretrained_sha256"] is None
    assert final["bn_batch"] == 32  # an explicit --bn-groups wins
