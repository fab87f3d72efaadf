"""Person re-identification data sets: loaders for the real on-disk layouts and a synthetic generator.

``create(name, root)`` loads a data set from the data-dir ``root`` (the folder that holds ``market1501/`` or
``msmt17/``); :mod:`spal.datasets.synthetic` writes those same trees with generated images.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from spal.datasets import market1501, msmt17
from spal.datasets.base import DatasetError, Record, ReIDDataset

__all__ = ["DatasetError", "Record", "ReIDDataset", "create", "expected_tree", "names"]

_LOADERS: dict[str, Callable[[str | os.PathLike[str]], ReIDDataset]] = {
    market1501.NAME: market1501.load,
    msmt17.NAME: msmt17.load,
}
_TREES: dict[str, Callable[[str | os.PathLike[str]], str]] = {
    market1501.NAME: market1501.expected_tree,
    msmt17.NAME: msmt17.expected_tree,
}


def names() -> list[str]:
    """The registered data set names, sorted."""
    return sorted(_LOADERS)


def _check_name(name: str) -> None:
    if name not in _LOADERS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(names())}")


def create(name: str, root: str | os.PathLike[str]) -> ReIDDataset:
    """Load the data set ``name`` from the data-dir ``root``.

    Args:
        name: one of :func:`names` (``"market1501"``, ``"msmt17"``).
        root: the folder that holds ``market1501/Market-1501-v15.09.15/`` or ``msmt17/MSMT17_V1/``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the valid names).
        DatasetError: the tree under ``root`` is missing or malformed (the message names the file or path).
    """
    _check_name(name)
    return _LOADERS[name](root)


def expected_tree(name: str, root: str | os.PathLike[str]) -> str:
    """The folders and list files that data set ``name`` needs under ``root``, one path a line (for messages
    printed before any loading, e.g. by ``make reproduce`` when data is missing)."""
    _check_name(name)
    return _TREES[name](root)
