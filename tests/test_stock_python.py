"""`python -m spal train` on a stock GPU Python: torch, torchvision, numpy, scipy, pillow and tqdm, nothing else.

The child process marks every package a bare GPU image lacks as missing (``None`` in ``sys.modules``: ``import``
raises ImportError and ``importlib.util.find_spec`` answers ``None``, as for a package that is not installed), so
an import of any of them anywhere on the training path fails the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spal.datasets import synthetic

# What `make setup` installs but a stock GPU image does not ship.
ABSENT = ("faiss", "fastapi", "uvicorn", "starlette", "pydantic", "sklearn", "tabulate", "matplotlib", "docker")

_BLOCKED_RUN = """
import json, runpy, sys
for name in json.loads(sys.argv[1]):
    sys.modules[name] = None
sys.argv = ["spal", *sys.argv[2:]]
runpy.run_module("spal", run_name="__main__", alter_sys=True)
"""


def test_train_runs_without_the_optional_packages(tmp_path: Path) -> None:
    data = tmp_path / "d"
    synthetic.generate(data, "market1501", num_ids=8, num_cams=3, images_per_id=5, height=32, width=16, seed=3)
    logs = tmp_path / "l"
    args = [
        "train", "-d", "synthetic", "--data-dir", str(data), "--logs-dir", str(logs), "-a", "resnet18",
        "--height", "32", "--width", "16", "-b", "16", "--num-instances", "4", "--epochs", "2", "--iters", "2",
        "--eval-step", "2", "-j", "0", "--k1", "6", "--k2", "2", "--min-samples", "2", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", _BLOCKED_RUN, json.dumps(ABSENT), *args],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    final = json.loads((logs / "final.json").read_text())
    assert final["epochs"] == 2 and final["mAP"] is not None


def test_the_blocker_really_blocks(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", _BLOCKED_RUN, json.dumps(["spal.engine.runner"]), "train", "--epochs", "1",
         "--data-dir", str(tmp_path / "d"), "--logs-dir", str(tmp_path / "l")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode != 0 and "import of spal.engine.runner halted" in done.stderr


def test_the_gpu_protocol_loads_without_the_optional_packages(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a GPU machine this would start the real measurement (make gpu-check runs it)")
    blocked_module = _BLOCKED_RUN.replace('runpy.run_module("spal"', 'runpy.run_module("harness.bench.gpu_protocol"')
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", blocked_module, json.dumps(ABSENT), "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    # It got as far as asking for the GPU: every import on its way worked without the blocked packages.
    assert done.returncode == 2 and "needs a CUDA device" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "d").exists()
