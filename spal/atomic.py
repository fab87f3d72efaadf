"""Atomic file writes: a crash at any moment leaves either the previous file or the new one, never half of one.

Standard library only, so that the annotation station (which must start without torch) and the checkpoints
share one writer.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_text", "fsync_dir"]


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a new or renamed file's directory entry durable (no-op where a directory cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], object], binary: bool = False) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path`` (``.<name>.*.tmp``), fsync it, rename it over
    ``path`` and fsync the folder. The temporary file is removed when ``write`` raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a small text file atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(text))
