"""The training configuration: every hyper-parameter of the protocol, named once.

Defaults are the paper's settings (docs/method.md). Protocol files under ``harness/protocols/`` use exactly these
keys, and a run's ``config.json`` stores them, so a run can always be traced back to its settings. Constructing a
``TrainConfig`` validates every value (types, ranges, relations): the command line, the protocol files and the
harness all rely on this one check.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spal.active.budget import check_budget
from spal.active.kinds import STRATEGY_KINDS

__all__ = [
    "TrainConfig",
    "CHOICES",
    "PRECISIONS",
    "RESUMABLE_KEYS",
    "RUNTIME_KEYS",
    "identity_settings",
    "resolve_precision",
    "upgrade_saved_settings",
]

#: The allowed values of every setting that is a choice: the command line, the protocol files and the harness
#: all take their choices from here (``arch`` must match :func:`spal.models.names`, which a test checks).
CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": ("market1501", "msmt17", "synthetic"),
    "arch": ("resnet18", "resnet50", "resnet50_ibn_a"),
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


#: Runtime settings: where the files are, how fast they load, which machine runs; not what a run is. They are left
#: out of a run's identity (the harness's run id, :func:`identity_settings`) and may change on ``--resume``; any
#: other setting may change the numbers. ``device`` is the loose one: another device rounds differently, and with
#: ``precision`` null it also picks bf16 (CUDA) or fp32; every run records it (``final.json``, ``env.json``).
#: Changing this list changes every run id, and committed runs would no longer be found (a test recomputes one).
RUNTIME_KEYS: tuple[str, ...] = ("workers", "device", "data_dir", "logs_dir")

#: Settings that ``--resume`` may change: they decide how long and where the run goes on, not what it computes
#: (more epochs extend a run; the runtime settings only move it). Any other difference is refused.
RESUMABLE_KEYS: tuple[str, ...] = ("epochs", *RUNTIME_KEYS, "annotation_timeout")


def identity_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (TrainConfig keys, as a protocol or ``config.json`` holds them) without :data:`RUNTIME_KEYS`:
    the settings that make a run what it is."""
    return {k: v for k, v in values.items() if k not in RUNTIME_KEYS}


# What each setting that is a number may be: (kind, lowest, highest, lowest excluded).
_NUMBERS: dict[str, tuple[type, float, float, bool]] = {
    **dict.fromkeys(
        (
            "height",
            "width",
            "batch_size",
            "num_instances",
            "epochs",
            "iters",
            "step_size",
            "min_samples",
            "k1",
            "k2",
            "eval_step",
            "bn_groups",
        ),
        (int, 1, math.inf, False),
    ),
    **dict.fromkeys(("workers", "seed"), (int, 0, math.inf, False)),
    **dict.fromkeys(("gamma", "temperature"), (float, 0, math.inf, True)),
    # eps is a radius on the Jaccard distance, which lies in [0, 1].
    "eps": (float, 0, 1, True),
    "momentum": (float, 0, 1, False),
    # lr 0 is allowed: a run that never learns (the harness's check that a broken method is caught).
    **dict.fromkeys(("lr", "weight_decay", "margin", "lambda_sp"), (float, 0, math.inf, False)),
}
_BOOLS = ("deterministic",)
_PATHS = ("data_dir", "logs_dir")


def _number_problem(key: str, value: Any) -> str | None:
    kind, low, high, open_low = _NUMBERS[key]
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind is int and not is_int:
        return f"{key} = {value!r} must be a whole number"
    # value != value: NaN, which no range check would catch.
    if kind is float and (not (is_int or isinstance(value, float)) or value != value):
        return f"{key} = {value!r} must be a number"
    if value < low or (open_low and value == low) or value > high:
        lower = f"> {low}" if open_low else f">= {low}"
        return f"{key} = {value!r} must be {lower}" + (f" and <= {high}" if high != math.inf else "")
    return None


def _problems(cfg: TrainConfig) -> list[str]:
    """Every problem of ``cfg``, one phrase each (empty when valid)."""
    # bn_groups None: derived from the world size (groups of 16 images, spal.models.bn_groups_for).
    numbers = [k for k in _NUMBERS if not (k == "bn_groups" and cfg.bn_groups is None)]
    problems = [p for p in (_number_problem(k, getattr(cfg, k)) for k in numbers) if p]
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            problems.append(f"{key} = {getattr(cfg, key)!r} must be one of {', '.join(allowed)}")
    values = cfg.to_dict()
    problems += [f"{k} = {values[k]!r} must be true or false" for k in _BOOLS if not isinstance(values[k], bool)]
    problems += [f"{k} must be a non-empty path" for k in _PATHS if not (isinstance(values[k], str) and values[k])]
    if not (cfg.precision is None or cfg.precision in PRECISIONS):
        problems.append(
            f"precision = {cfg.precision!r} must be one of {', '.join(PRECISIONS)} "
            "or null (bf16 on CUDA, fp32 on the CPU)"
        )
    if not (cfg.pretrained is None or (isinstance(cfg.pretrained, str) and cfg.pretrained)):
        problems.append(f"pretrained = {cfg.pretrained!r} must be a path or null")
    timeout = cfg.annotation_timeout
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        problems.append(f"annotation_timeout = {timeout!r} must be seconds > 0 or null (wait forever)")
    synthetic = cfg.synthetic
    if not (synthetic is None or (isinstance(synthetic, dict) and all(isinstance(k, str) for k in synthetic))):
        problems.append("synthetic must be null or an object of spal.datasets.synthetic.generate arguments")
    try:
        check_budget(cfg.budget)
    except ValueError as error:
        problems.append(str(error))
    if problems:
        return problems
    # Relations, checked once every value is of the right kind.
    if cfg.batch_size % cfg.num_instances:
        problems.append(f"batch_size {cfg.batch_size} must be a multiple of num_instances {cfg.num_instances}")
    if cfg.bn_groups is not None and cfg.batch_size % cfg.bn_groups:
        problems.append(f"bn_groups {cfg.bn_groups} must divide batch_size {cfg.batch_size}")
    if cfg.k2 > cfg.k1:
        problems.append(f"k2 = {cfg.k2} must not exceed k1 = {cfg.k1}")
    # People answer the pairs of a strategy that selects by uncertainty; random draws are a ground-truth ablation.
    if cfg.oracle == "human" and cfg.selection not in STRATEGY_KINDS:
        problems.append(
            f"oracle human asks the pairs of --selection {', '.join(STRATEGY_KINDS)}, not {cfg.selection!r}"
        )
    return problems


@dataclass
class TrainConfig:
    """All settings of one SPAL training run (defaults: the paper's, docs/method.md)."""

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
        """Validate every setting (types, ranges, relations): a ``ValueError`` lists every problem on one line."""
        problems = _problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        self.budget = str(self.budget)

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
            raise ValueError(f"unknown training settings: {', '.join(unknown)}; valid: {', '.join(cls.keys())}")
        return cls(**values)

    def resume_differences(self, saved: dict[str, Any]) -> list[str]:
        """``"key old -> new"`` for every setting outside :data:`RESUMABLE_KEYS` that differs from ``saved`` (the
        config a checkpoint stored); empty when this config may continue that run."""
        # A checkpoint of an earlier spal says amp where today's say precision (upgrade_saved_settings).
        saved = upgrade_saved_settings(saved)
        old = TrainConfig.from_dict({k: v for k, v in saved.items() if k in TrainConfig.keys()}).to_dict()
        new = self.to_dict()
        return [f"{k} {old[k]!r} -> {new[k]!r}" for k in new if k not in RESUMABLE_KEYS and old[k] != new[k]]
