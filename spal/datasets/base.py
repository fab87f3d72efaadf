"""The in-memory form of a person re-identification data set: three lists of ``(path, pid, camid)`` records.

Loaders (``market1501.py``, ``msmt17.py``) turn an on-disk tree into a :class:`ReIDDataset`; every problem
they find in the tree is a :class:`DatasetError` whose message names the offending file or the expected path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DatasetError", "Record", "ReIDDataset", "SUBSETS"]

logger = logging.getLogger(__name__)

#: One image: absolute path, identity label, 0-based camera index.
Record = tuple[str, int, int]

#: The subsets every data set has, in the order the summary lists them.
SUBSETS: tuple[str, ...] = ("train", "query", "gallery")


class DatasetError(Exception):
    """A data set on disk is missing, incomplete or malformed.

    The message names the offending file (and line, for list files) or the full expected path, and says what
    to do about it.
    """


@dataclass(frozen=True)
class ReIDDataset:
    """A loaded data set.

    Attributes:
        name: registry name, e.g. ``"market1501"``.
        root: the data-dir it was loaded from (the folder that holds ``market1501/`` or ``msmt17/``).
        dataset_dir: the folder of the data set itself, e.g. ``<root>/market1501/Market-1501-v15.09.15``.
        train, query, gallery: lists of ``(path, pid, camid)``: absolute image path, identity label and
            0-based camera index. Train pids are ``0 .. K - 1`` (K train identities) (Market-1501's are relabelled,
            MSMT17's are so already); query and gallery pids are the data set's own labels (Market-1501
            distractors keep pid 0; junk images are not listed).
    """

    name: str
    root: str
    dataset_dir: str
    train: list[Record] = field(repr=False)
    query: list[Record] = field(repr=False)
    gallery: list[Record] = field(repr=False)

    def subset(self, subset: str) -> list[Record]:
        """The records of ``subset`` (one of :data:`SUBSETS`)."""
        if subset not in SUBSETS:
            raise ValueError(f"unknown subset {subset!r}; valid subsets: {', '.join(SUBSETS)}")
        return getattr(self, subset)

    def pids(self, subset: str) -> np.ndarray:
        """``(len(subset),)`` int64 array: the pid of every record of ``subset``, in record order."""
        return np.fromiter((pid for _, pid, _ in self.subset(subset)), dtype=np.int64)

    def camids(self, subset: str) -> np.ndarray:
        """``(len(subset),)`` int64 array: the 0-based camera of every record of ``subset``, in order."""
        return np.fromiter((camid for _, _, camid in self.subset(subset)), dtype=np.int64)

    def statistics(self, subset: str) -> tuple[int, int, int]:
        """``(# distinct pids, # images, # distinct cameras)`` of ``subset``."""
        records = self.subset(subset)
        return len({r[1] for r in records}), len(records), len({r[2] for r in records})

    def summary(self) -> str:
        """The statistics table (subset | # ids | # images | # cameras) as text, titled with the name."""
        rows = [(subset, *map(str, self.statistics(subset))) for subset in SUBSETS]
        return f"{self.name} ({self.dataset_dir})\n{_table(('subset', '# ids', '# images', '# cameras'), rows)}"

    def log_summary(self, level: int = logging.INFO) -> None:
        """Log :meth:`summary` at ``level``."""
        logger.log(level, "loaded data set %s", self.summary())


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned, a dashed rule under the
    headers (written here rather than with tabulate so that a bare GPU image can load data sets)."""
    widths = [max(len(h) + 2, *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])
