"""Shared flags and environment of the engine's end-to-end tests (real `spal train` processes)."""

from __future__ import annotations

import os

# ResNet-18 at 32 x 16 on 12 identities: seconds per run on the CPU. The lr is pinned because the tests' bounds
# depend on it (the synthetic defaults of the CLI may change).
TINY_TRAIN_ARGS = [
    "-d", "synthetic", "-b", "16", "--num-instances", "4", "--height", "32", "--width", "16", "-a", "resnet18",
    "--k1", "6", "--k2", "2", "--eps", "0.7", "--min-samples", "2", "-j", "0", "--eval-step", "1",
    "--device", "cpu", "--deterministic", "--lr", "3.5e-4",
]  # fmt: skip


def spal_env() -> dict[str, str]:
    """The environment of a child `spal train`: one thread each, no inherited torchrun variables."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env
