"""Atomic checkpoints: a crash at any moment leaves either the previous file or the new one, never half of one."""

from __future__ import annotations

import copy
import os
import pickle
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spal.atomic import atomic_write, atomic_write_text

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "atomic_write_text",
    "remove_stale_temps",
    "snapshot",
    "BackgroundCheckpointer",
]


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt or not one written by ``spal train``; the message names it."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary file beside ``path``, fsync it, then rename over ``path``."""
    return atomic_write(path, lambda handle: torch.save(state, handle), binary=True)


def snapshot(state: Any) -> Any:
    """A copy of ``state`` that shares no memory with it: tensors copied to the host, arrays and everything else
    copied too, so that training may change the originals while the copy is written."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: snapshot(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(snapshot(value) for value in state)
    if isinstance(state, np.ndarray):
        return state.copy()
    return copy.deepcopy(state)


class BackgroundCheckpointer:
    """Writes checkpoints with :func:`save_checkpoint` in a background thread, one at a time.

    :meth:`submit` takes a :func:`snapshot` of the state (the only part the caller waits for: a device-to-host
    copy of the model, optimiser and memory) and queues the write; the previous write is finished first, so a
    later checkpoint never lands before an earlier one. :meth:`wait` returns once everything submitted is on
    disk and raises the error of a failed write. The file stays atomic: a crash during a background write
    leaves the previous checkpoint.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: Future | None = None

    def submit(self, state: dict[str, Any], path: str | os.PathLike) -> None:
        copied = snapshot(state)
        self.wait()
        self._pending = self._pool.submit(save_checkpoint, copied, path)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the last write, then stop the thread."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


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
