"""Oracles answer "are images a and b the same person?" (SPEC 3.3: pluggable, ground truth or human)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from spal.active.annotations import AnnotationLog

__all__ = ["Oracle", "GroundTruthOracle", "LoggedOracle"]


@runtime_checkable
class Oracle(Protocol):
    """Anything callable as ``oracle(a, b) -> bool`` (``True``: the two training images show one identity)."""

    def __call__(self, a: int, b: int) -> bool: ...


class GroundTruthOracle:
    """Answers from the true identities, as in the paper's experiments.

    Args:
        pids: ``(n,)`` integer identity of every training image (array, tensor or sequence).

    Attributes:
        num_calls: questions answered so far.
    """

    def __init__(self, pids: np.ndarray | torch.Tensor | Sequence[int]) -> None:
        if isinstance(pids, torch.Tensor):
            pids = pids.detach().cpu().numpy()
        self.pids = np.asarray(pids)
        if self.pids.ndim != 1:
            raise ValueError(f"pids must be a 1-d array of identities, got shape {self.pids.shape}")
        self.num_calls = 0

    def __call__(self, a: int, b: int) -> bool:
        n = len(self.pids)
        if not (0 <= a < n and 0 <= b < n):
            raise IndexError(f"pair ({a}, {b}) is out of range for {n} training images")
        self.num_calls += 1
        return bool(self.pids[a] == self.pids[b])


class LoggedOracle:
    """Wraps an oracle so that every answer lands in an :class:`AnnotationLog` before it is used.

    A question whose unordered pair already has a record in the log (an answer given before a crash, say) is
    answered from the log without asking ``inner`` again; otherwise ``inner`` is asked and the answer is
    appended (flushed and fsync-ed) before it is returned.

    The record's ``kind`` comes from the last :meth:`note_kind` for that pair (pass
    ``on_pair=oracle.note_kind`` to :func:`spal.active.select_support_pairs`), else from ``kind_of(a, b)``,
    else ``"unknown"``.

    Args:
        inner: the oracle that really answers.
        log: where answers are recorded and looked up.
        epoch: written into each record; may be reassigned between epochs.
        kind_of: optional ``(a, b) -> kind`` (``"positive"``, ``"negative"`` or ``"random"``).
        paths: optional image path of every point; the record then holds ``paths: [paths[a], paths[b]]``.
        annotator: who answers (``"ground-truth"``, a person's name, ...).
        sync_each: fsync every answer as it is logged; ``False`` leaves it to the caller to call
            ``log.sync()`` before the answers are used (right for an oracle that can answer again for free).

    Attributes:
        num_asked: questions passed to ``inner`` (and logged).
        num_replayed: questions answered from the log.
    """

    def __init__(
        self,
        inner: Oracle,
        log: AnnotationLog,
        epoch: int,
        kind_of: Callable[[int, int], str] | None = None,
        paths: Sequence[str] | None = None,
        annotator: str = "ground-truth",
        sync_each: bool = True,
    ) -> None:
        self.inner = inner
        self.sync_each = sync_each
        self.log = log
        self.epoch = int(epoch)
        self.kind_of = kind_of
        self.paths = paths
        self.annotator = annotator
        self.num_asked = 0
        self.num_replayed = 0
        self._kinds: dict[tuple[int, int], str] = {}

    def note_kind(self, a: int, b: int, kind: str) -> None:
        """Remember the kind of the next question about ``{a, b}`` (an ``on_pair`` callback)."""
        a, b = int(a), int(b)
        self._kinds[(a, b) if a < b else (b, a)] = kind

    def __call__(self, a: int, b: int) -> bool:
        a, b = int(a), int(b)
        pair = (a, b) if a < b else (b, a)
        kind = self._kinds.pop(pair, None)
        recorded = self.log.lookup(a, b)
        if recorded is not None:
            self.num_replayed += 1
            return bool(recorded["same"])
        same = bool(self.inner(a, b))
        if kind is None:
            kind = self.kind_of(a, b) if self.kind_of is not None else "unknown"
        record = {
            "epoch": self.epoch,
            "a": a,
            "b": b,
            "same": same,
            "kind": kind,
            "annotator": self.annotator,
        }
        if self.paths is not None:
            record["paths"] = [str(self.paths[a]), str(self.paths[b])]
        self.log.append(record, sync=self.sync_each)
        self.num_asked += 1
        return same
