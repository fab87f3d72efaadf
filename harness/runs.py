"""Runs as cells of a matrix: one (data set, protocol, variant, seed) each, run resumably into ``results/runs/``.

A run lives in ``results/runs/<dataset>/<protocol>/<run-id>/`` (config.json, env.json, metrics.jsonl, final.json,
train.log); its checkpoint and annotation log live under ``logs/runs/`` with the same relative path, outside git.
Re-running a finished cell starts nothing; an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spal import models
from spal.engine.checkpoint import atomic_write_text
from spal.engine.config import identity_settings

__all__ = ["Cell", "run_cell", "CellResult", "process_layout"]

log = logging.getLogger(__name__)


@dataclass
class Cell:
    """One training run to do.

    Attributes:
        dataset: ``market1501`` | ``msmt17`` | ``synthetic``.
        protocol: protocol name (``paper``, ``ci``, ``smoke``) and ``protocol_version`` its version.
        variant: short name of what differs from the protocol (``full``, ``selection=random``, ``budget=0.5n``).
        train: every TrainConfig setting of the run (data_dir and logs_dir are filled in by the harness).
        gpus: GPUs the protocol was designed for (the paper's 4); BatchNorm groups emulate the missing ones.
        pretrain: the protocol's ``pretrain`` object, when ``train["pretrained"]`` stands for the file it makes.
    """

    dataset: str
    protocol: str
    protocol_version: int
    seed: int
    variant: str
    train: dict[str, Any]
    gpus: int = 1
    layout: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] | None = None

    def config_hash(self, commit: str | None) -> str:
        """8 hex digits of the run's identity: its settings but the runtime ones (where files are, how fast they
        load, which device: :data:`spal.engine.config.RUNTIME_KEYS`), its weights by name, the protocol, its
        version and ``commit``."""
        identity = identity_settings(self.train)
        identity["pretrained"] = _weights_identity(identity.get("pretrained"))
        blob = json.dumps(
            {
                "train": identity,
                "protocol": self.protocol,
                "version": self.protocol_version,
                "commit": commit,
            },
            sort_keys=True,
        )
        return hashlib.sha1(blob.encode()).hexdigest()[:8]

    def run_id(self, commit: str | None) -> str:
        slug = self.variant.replace("=", "-").replace("/", "-").replace(" ", "")
        parts = [self.layout] if self.layout else []
        parts += [slug, f"seed{self.seed}", self.config_hash(commit), (commit or "nogit")[:7]]
        return "-".join(parts)


@dataclass
class CellResult:
    cell: Cell
    run_dir: Path
    status: str  # "complete" (already done), "ran", "resumed", "failed"
    final: dict[str, Any] | None = None
    error: str | None = None


def _weights_identity(pretrained: str | None) -> str | None:
    """A run's weights as its id sees them: the words ``none`` / ``imagenet`` as they are, a path by its file name
    (the same file under another folder, or on another host, is the same run)."""
    if pretrained is None or pretrained in models.PRETRAINED_CHOICES:
        return pretrained
    return f"file:{Path(pretrained).name}"


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def process_layout(cell: Cell, world_size: int | None = None) -> tuple[int, int, int]:
    """``(world_size, bn_groups, bn_batch)`` of a cell: processes, BatchNorm groups a process, images a group.

    The processes are the visible GPUs up to the protocol's ``gpus`` (or ``world_size`` when given); the
    BatchNorm group size is the protocol's (its one-process ``train.bn_groups`` cut the global batch into groups
    of ``bn_batch``), kept at every world size by :func:`spal.models.bn_groups_for`.

    Raises:
        spal.models.BatchNormLayoutError: the processes cannot split the batch into such groups (e.g. 3 GPUs for
            the paper's 64 images in groups of 16); the message names the counts that work.
    """
    gpus = _gpu_count() if world_size is None else world_size
    world = max(1, min(gpus, cell.gpus)) if gpus > 1 else 1
    batch = int(cell.train["batch_size"])
    bn_batch = batch // int(cell.train["bn_groups"])
    return world, models.bn_groups_for(batch, world, bn_batch), bn_batch


def _launch_command(config_path: Path, cell: Cell, logs_dir: Path, world_size: int) -> list[str]:
    spal_args = [
        "-m",
        "spal",
        "train",
        "-d",
        cell.dataset,
        "--config",
        str(config_path),
        "--logs-dir",
        str(logs_dir),
        "--resume",
    ]
    if world_size > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={world_size}",
            *spal_args,
        ]
    return [sys.executable, *spal_args]


def run_cell(
    cell: Cell,
    results_dir: Path,
    logs_root: Path,
    data_dir: str,
    environment: dict[str, Any],
    *,
    world_size: int | None = None,
) -> CellResult:
    """Run one cell unless it is complete; resume it when its checkpoint exists.

    The weights are resolved here (``train.pretrained``: a path, ``imagenet`` from torch's hub cache, or
    ``none``) and the file found is what training loads; its name and SHA-256 go into ``config.json`` and
    ``env.json`` (and, from training, ``final.json``).

    Raises:
        spal.models.BatchNormLayoutError: before any work, when the world size cannot keep the protocol's
            BatchNorm group size (see :func:`process_layout`).
        spal.models.PretrainedNotFoundError: before any work, when the weight file is missing.
    """
    commit = environment.get("git_commit")
    folders = _RunFolders.of(cell, results_dir, logs_root, commit)
    finished = _read_finished(cell, folders)
    if finished is not None:
        return finished
    prepared = _prepare_run(cell, folders, data_dir, environment, world_size)
    started = time.perf_counter()
    returncode = _launch(cell, prepared)
    return _collect(cell, prepared, returncode, commit, started)


@dataclass(frozen=True)
class _RunFolders:
    """Where one run's files go: ``run_dir`` (kept in git) and ``logs_dir`` (checkpoint, annotation log and
    training's own files, outside git), both ``<dataset>/<protocol>/<run_id>`` under their roots."""

    run_id: str
    run_dir: Path
    logs_dir: Path

    @classmethod
    def of(cls, cell: Cell, results_dir: Path, logs_root: Path, commit: str | None) -> _RunFolders:
        run_id = cell.run_id(commit)
        relative = Path(cell.dataset) / cell.protocol / run_id
        return cls(run_id, results_dir / "runs" / relative, logs_root / relative)

    @property
    def final_path(self) -> Path:
        """The harness's ``final.json``: there only once the run is complete."""
        return self.run_dir / "final.json"


@dataclass(frozen=True)
class _PreparedRun:
    """A run whose folders and config files are written, ready to launch.

    Attributes:
        train: the TrainConfig settings training reads from ``config_path`` (``train_config.json``).
        world_size: training processes to launch.
        resumed: a checkpoint was there, so training resumes from it.
    """

    folders: _RunFolders
    train: dict[str, Any]
    config_path: Path
    world_size: int
    resumed: bool


def _read_finished(cell: Cell, folders: _RunFolders) -> CellResult | None:
    """The ``complete`` result of a run whose ``final.json`` is there, else None (the run is still to do)."""
    if not folders.final_path.is_file():
        return None
    log.info("run %s is complete (%s); nothing to do", folders.run_id, folders.final_path)
    return CellResult(cell, folders.run_dir, "complete", json.loads(folders.final_path.read_text()))


def _prepare_run(
    cell: Cell,
    folders: _RunFolders,
    data_dir: str,
    environment: dict[str, Any],
    world_size: int | None,
) -> _PreparedRun:
    """Settle the process layout and the weights, then make the run's folders and write ``config.json``,
    ``env.json`` and training's ``train_config.json``.

    Raises:
        spal.models.BatchNormLayoutError, spal.models.PretrainedNotFoundError: before any folder is made.
    """
    layout = process_layout(cell, world_size)
    world, bn_groups, _ = layout
    weights = models.resolve_pretrained(cell.train["arch"], cell.train["pretrained"])
    recorded_weights = {
        "pretrained": weights.name if weights else None,
        "pretrained_sha256": weights.sha256 if weights else None,
    }
    train = _training_settings(cell, folders, data_dir, bn_groups, weights)
    resumed = (folders.logs_dir / "checkpoint.pth").is_file()
    log.info(
        "%s run %s (%s, %s, seed %d, world size %d, bn_groups %d)",
        "resuming interrupted" if resumed else "starting",
        folders.run_id,
        cell.dataset,
        cell.variant,
        cell.seed,
        world,
        bn_groups,
    )
    folders.run_dir.mkdir(parents=True, exist_ok=True)
    folders.logs_dir.mkdir(parents=True, exist_ok=True)
    _write_json(folders.run_dir / "config.json", _run_config(cell, folders, train, layout, recorded_weights))
    _write_json(folders.run_dir / "env.json", {**environment, **recorded_weights})
    config_path = folders.logs_dir / "train_config.json"
    _write_json(config_path, train)
    return _PreparedRun(folders, train, config_path, world, resumed)


def _training_settings(
    cell: Cell,
    folders: _RunFolders,
    data_dir: str,
    bn_groups: int,
    weights: models.PretrainedWeights | None,
) -> dict[str, Any]:
    """The cell's TrainConfig settings with this host's folders, the process layout's BatchNorm groups, the
    resolved weight file (``none`` for random weights) and the cell's seed filled in."""
    return {
        **cell.train,
        "data_dir": data_dir,
        "logs_dir": str(folders.logs_dir),
        "bn_groups": bn_groups,
        # The file found here is the file trained with, whatever the training process's hub cache holds.
        "pretrained": str(weights.path) if weights else "none",
        "seed": cell.seed,
    }


def _run_config(
    cell: Cell,
    folders: _RunFolders,
    train: dict[str, Any],
    layout: tuple[int, int, int],
    recorded_weights: dict[str, str | None],
) -> dict[str, Any]:
    """The run's ``config.json``: the cell, its training settings, its ``(world_size, bn_groups, bn_batch)``
    layout (:func:`process_layout`) and its weights by name and hash."""
    world, bn_groups, bn_batch = layout
    return {
        "protocol": cell.protocol,
        "protocol_version": cell.protocol_version,
        "dataset": cell.dataset,
        "layout": cell.layout,
        "seed": cell.seed,
        "variant": cell.variant,
        "run_id": folders.run_id,
        "train": train,
        "world_size": world,
        "gpus": cell.gpus,
        "bn_groups": bn_groups,
        "bn_batch": bn_batch,
        **recorded_weights,
        "synthetic": cell.dataset == "synthetic",
        **cell.extra,
    }


def _launch(cell: Cell, prepared: _PreparedRun) -> int:
    """Train in a child process (or ``world_size`` of them) and copy its metrics and log into the run folder,
    finished or not; returns the exit code."""
    logs_dir = prepared.folders.logs_dir
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = _launch_command(prepared.config_path, cell, logs_dir, prepared.world_size)
    proc = subprocess.run(command, env=env, check=False)
    for name in ("metrics.jsonl", "train.log"):
        if (logs_dir / name).is_file():
            shutil.copyfile(logs_dir / name, prepared.folders.run_dir / name)
    return proc.returncode


def _collect(cell: Cell, prepared: _PreparedRun, returncode: int, commit: str | None, started: float) -> CellResult:
    """The launched run's result: ``failed`` unless training exited 0 and wrote its ``final.json``, which is
    then completed with the cell's identity and the wall time since ``started`` (a ``perf_counter`` reading)
    and written as the run's own ``final.json``."""
    folders = prepared.folders
    if returncode != 0 or not (folders.logs_dir / "final.json").is_file():
        error = f"training exited with code {returncode}; its log: {folders.logs_dir / 'train.log'}"
        log.error("run %s failed: %s", folders.run_id, error)
        return CellResult(cell, folders.run_dir, "failed", error=error)
    final = json.loads((folders.logs_dir / "final.json").read_text())
    final.update(
        dataset=cell.dataset,
        protocol=cell.protocol,
        variant=cell.variant,
        seed=cell.seed,
        layout=cell.layout,
        run_id=folders.run_id,
        synthetic=cell.dataset == "synthetic",
        synthetic_size=_synthetic_size(prepared.train) if cell.dataset == "synthetic" else None,
        git_commit=commit,
        harness_wall_time_s=round(time.perf_counter() - started, 2),
    )
    _write_json(folders.final_path, final)
    return CellResult(cell, folders.run_dir, "resumed" if prepared.resumed else "ran", final)


def _synthetic_size(train: dict[str, Any]) -> str:
    synthetic = train.get("synthetic") or {}
    layout = train.get("synthetic_layout", "market1501")
    parts = [f"{k}={v}" for k, v in sorted(synthetic.items())]
    return f"{layout} layout" + (f" ({', '.join(parts)})" if parts else " (default size)")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
