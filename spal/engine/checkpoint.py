"""Atomic checkpoints: a crash at any moment leaves either the previous file or the new one, never half of one."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from spal.atomic import atomic_write, atomic_write_text

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "atomic_write_text", "remove_stale_temps"]


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt or not one written by ``spal train``; the message names it."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary file beside ``path``, fsync it, then rename over ``path``."""
    return atomic_write(path, lambda handle: torch.save(state, handle), binary=True)


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        mmap: map the tensors instead of reading them (cheap when only the settings and the epoch are wanted).

    Raises:
        FileNotFoundError: no such file. CheckpointError: the file is not a whole checkpoint of ``spal train``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (pass the .pth file written under --logs-dir)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or corrupt ({err.__class__.__name__}); "
            "resume from an intact checkpoint or start the run again in a new --logs-dir"
        ) from err
    if not isinstance(state, dict) or not {"model", "config", "epoch"} <= set(state):
        raise CheckpointError(f"{path} is not a checkpoint written by spal train (no model, config and epoch)")
    return state


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write left in ``directory`` (``.<name>.*.tmp``).

    Only for a directory that no other process writes into at the time (a run's logs dir, by its rank 0): a
    live writer's temporary file would go too. Returns the removed paths.
    """
    removed = []
    for tmp in sorted(Path(directory).glob(".*.tmp")):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
