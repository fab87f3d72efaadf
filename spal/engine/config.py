"""The training configuration: every hyper-parameter of the protocol, named once.

Defaults are the paper's settings (SPEC section 2). Protocol files under ``harness/protocols/`` use exactly these
keys, and a run's ``config.json`` stores them, so a run can always be traced back to its settings.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig", "CHOICES", "PRECISIONS", "resolve_precision", "upgrade_saved_settings"]

_BUDGET = re.compile(r"^\s*(\d+|\d*\.?\d+\s*\*?\s*n|n)\s*$")

CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": ("market1501", "msmt17", "synthetic"),
    "synthetic_layout": ("market1501", "msmt17"),
    "selection": ("dus", "random", "positive-only", "negative-only"),
    "clustering": ("constrained", "plain"),
    "propagation": ("on", "off"),
    "oracle": ("ground-truth", "human"),
    "device": ("auto", "cpu", "cuda"),
}

#: Training and evaluation precisions: bf16 autocast (the model's matmuls and convolutions in bfloat16; losses,
#: memory and ranking stay float32) or plain float32 (the paper's: the authors' script has no mixed precision).
PRECISIONS: tuple[str, ...] = ("bf16", "fp32")


def resolve_precision(precision: str | None, device_type: str) -> str:
    """The precision a run uses: ``precision`` when given, else bf16 on CUDA and fp32 on any other device."""
    if precision is not None:
        return precision
    return "bf16" if device_type == "cuda" else "fp32"


def upgrade_saved_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Settings saved by an earlier spal (a checkpoint's ``config``) in today's keys: the boolean ``amp``
    became ``precision`` (true: ``"bf16"``, false: ``"fp32"``, what such a run trained in on any device)."""
    upgraded = dict(values)
    if "amp" in upgraded:
        amp = upgraded.pop("amp")
        upgraded.setdefault("precision", "bf16" if amp else "fp32")
    return upgraded


@dataclass
class TrainConfig:
    """All settings of one SPAL training run (defaults: the paper's, SPEC section 2)."""

    dataset: str = "market1501"
    synthetic_layout: str = "market1501"
    data_dir: str = "data"
    logs_dir: str = "logs"
    arch: str = "resnet50"
    pretrained: str | None = None
    height: int = 256
    width: int = 128
    batch_size: int = 64
    num_instances: int = 4
    workers: int = 4
    epochs: int = 50
    iters: int = 400
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    step_size: int = 20
    gamma: float = 0.1
    eps: float = 0.6
    min_samples: int = 4
    k1: int = 30
    k2: int = 6
    temperature: float = 0.05
    momentum: float = 0.2
    margin: float = 1.0
    lambda_sp: float = 1.0
    budget: str = "2n"
    selection: str = "dus"
    clustering: str = "constrained"
    propagation: str = "on"
    eval_step: int = 10
    seed: int = 1
    # None: groups of 16 images at any world size (spal.models.bn_groups_for); a number: groups a process.
    bn_groups: int | None = None
    deterministic: bool = False
    oracle: str = "ground-truth"
    annotation_timeout: float | None = None
    device: str = "auto"
    # None: bf16 on CUDA, fp32 on the CPU (resolve_precision); "fp32" is the paper's precision.
    precision: str | None = None
    synthetic: dict[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        self.budget = str(self.budget)
        if not _BUDGET.match(self.budget):
            raise ValueError(
                f"budget={self.budget!r}: give a number of pair queries (25872) or a multiple of n (2n, 0.5n)"
            )
        for key, allowed in CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ValueError(f"{key}={value!r} is not one of {', '.join(allowed)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {', '.join(PRECISIONS)} (or None: automatic)")
        if self.batch_size % self.num_instances:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of num_instances {self.num_instances}"
            )
        if self.bn_groups is not None and (self.bn_groups < 1 or self.batch_size % self.bn_groups):
            raise ValueError(f"bn_groups {self.bn_groups} must divide batch_size {self.batch_size}")
        for key in ("epochs", "iters", "k1", "k2", "min_samples", "eval_step"):
            if getattr(self, key) < (0 if key == "epochs" else 1):
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are an error (a typo must not silently fall back to a default)."""
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ValueError(
                f"unknown training settings: {', '.join(unknown)}; valid: {', '.join(cls.keys())}"
            )
        return cls(**values)
