"""Atomic checkpoints: a crash at any moment leaves either the previous file or the new one, never half of one."""

from __future__ import annotations

import copy
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["save_checkpoint", "load_checkpoint", "atomic_write_text", "snapshot", "BackgroundCheckpointer"]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary file beside ``path``, fsync it, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (a missing file is a clear error)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (pass the .pth file written under --logs-dir)")
    return torch.load(path, map_location=map_location, weights_only=False)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a small text file atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
