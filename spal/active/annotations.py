"""The append-only annotation log: one JSON object a line for every answer an oracle gave.

Every append is flushed and ``fsync``-ed before it returns, so an answer the training loop has used is on disk
even if the process dies right after. A writer whose answers can be asked again at no cost (the ground-truth
oracle) may append with ``sync=False`` and call :meth:`AnnotationLog.sync` once, before anything uses them.
A crash in the middle of a write leaves a truncated last line: reading ignores it (with a warning) and the next
append first cuts it off, so the new record starts on a fresh line and the file stays valid JSON-lines. One
process writes a log at a time.

A record holds at least ``epoch`` (int), ``a``, ``b`` (int point indices), ``same`` (bool), ``kind`` (one of
:data:`KINDS`), ``annotator`` (str) and ``time`` (ISO-8601 UTC, filled in when absent); ``paths`` (the two
image paths) is optional, and further keys are kept as they are.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spal.atomic import fsync_dir

__all__ = ["AnnotationLog", "KINDS", "read_records", "utc_now"]

log = logging.getLogger(__name__)

KINDS = ("positive", "negative", "random", "unknown")
_REQUIRED = {"epoch": int, "a": int, "b": int, "same": bool, "kind": str, "annotator": str}


def utc_now() -> str:
    """The current time as ISO-8601 UTC with seconds, e.g. ``2026-11-26T19:38:00+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_records(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], int]:
    """Parse a log file.

    Returns:
        ``(records, valid_bytes)``: the records in file order, and the length of the prefix that holds them (a
        truncated last line, which a crash mid-write leaves, lies beyond it and is ignored with a warning).
        A missing file gives ``([], 0)``; blank lines are skipped. A malformed line anywhere but at the end
        raises ``ValueError``.
    """
    path = Path(path)
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    start = 0
    line_number = 0
    while start < len(data):
        end = data.find(b"\n", start)
        complete = end != -1
        line = data[start : end if complete else len(data)]
        line_number += 1
        if complete and not line.strip():
            start = end + 1
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            if complete:
                raise ValueError(
                    f"{path}, line {line_number}: not a JSON record ({error}); the annotation log is "
                    "damaged: repair or remove that line"
                ) from error
            log.warning("%s: ignoring a truncated last line (%d bytes), left by an interrupted write", path, len(line))
            return records, start
        records.append(record)
        start = end + 1 if complete else len(data)
    return records, len(data)


class AnnotationLog:
    """An append-only JSON-lines file of oracle answers with an in-memory index by unordered pair.

    Args:
        path: the log file; created (with its folder) on the first append. Existing records are loaded.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._records, self._valid_bytes = read_records(self.path)
        # Bytes of a truncated last line beyond the valid records; cut off by the next append.
        self._tail_bytes = (self.path.stat().st_size if self.path.exists() else 0) - self._valid_bytes
        self._by_pair: dict[tuple[int, int], dict[str, Any]] = {}
        # Appends made with sync=False since the last sync (and whether one of them created the file).
        self._unsynced = False
        self._created_unsynced = False
        for record in self._records:
            self._index(record)

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> list[dict[str, Any]]:
        """All records in file order (those read at opening, then those appended)."""
        return [dict(r) for r in self._records]

    def lookup(self, a: int, b: int) -> dict[str, Any] | None:
        """The latest record for the unordered pair ``{a, b}``, or ``None``; O(1)."""
        a, b = int(a), int(b)
        record = self._by_pair.get((a, b) if a < b else (b, a))
        return None if record is None else dict(record)

    def append(self, record: dict[str, Any], sync: bool = True) -> dict[str, Any]:
        """Validate ``record``, add ``time`` if absent, write it as one line, flush and (unless ``sync`` is
        False: then :meth:`sync` must follow before the answer is used) fsync.

        Returns:
            The record as written.
        """
        record = dict(record)
        record.setdefault("time", utc_now())
        _validate(record)
        line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "r+b" if not created else "wb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size != self._valid_bytes + self._tail_bytes:
                raise RuntimeError(
                    f"{self.path} is {size} bytes long, expected {self._valid_bytes + self._tail_bytes}: "
                    "another process changed it while it was open; use one log per run and one writer"
                )
            if self._tail_bytes:
                # A truncated line from an interrupted write: cut it off so the record starts a fresh line.
                log.warning("%s: dropping %d bytes of a truncated last line", self.path, self._tail_bytes)
                handle.truncate(self._valid_bytes)
                self._tail_bytes = 0
            if self._valid_bytes > 0:
                # A complete record whose newline was lost in a crash still needs one before the next record.
                handle.seek(self._valid_bytes - 1)
                if handle.read(1) != b"\n":
                    line = b"\n" + line
            handle.seek(self._valid_bytes)
            handle.write(line)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        if created and sync:
            fsync_dir(self.path.parent)
        self._unsynced = self._unsynced or not sync
        self._created_unsynced = self._created_unsynced or (created and not sync)
        self._valid_bytes += len(line)
        self._records.append(record)
        self._index(record)
        return dict(record)

    def sync(self) -> None:
        """Make every record appended with ``sync=False`` durable (one fsync of the file, and of its folder when
        the file was created by such an append)."""
        if not self._unsynced:
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            # fsync flushes the file's data whichever descriptor wrote it.
            os.fsync(fd)
        finally:
            os.close(fd)
        if self._created_unsynced:
            fsync_dir(self.path.parent)
        self._unsynced = self._created_unsynced = False

    def _index(self, record: dict[str, Any]) -> None:
        a, b = int(record["a"]), int(record["b"])
        self._by_pair[(a, b) if a < b else (b, a)] = record


def _validate(record: dict[str, Any]) -> None:
    for key, kind in _REQUIRED.items():
        if key not in record:
            raise ValueError(f"annotation record {record!r} lacks the key {key!r}")
        value = record[key]
        # bool is an int subclass: an int field must not take a bool, a bool field must be a real bool.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"annotation record field {key!r} must be {kind.__name__}, got {value!r}")
    if record["kind"] not in KINDS:
        raise ValueError(f"annotation record kind {record['kind']!r} is not one of {KINDS}")
    if not isinstance(record["time"], str):
        raise ValueError(f"annotation record field 'time' must be an ISO-8601 string, got {record['time']!r}")
