"""The training side of the annotation station: a human oracle for the support pairs (SPEC section 3.3).

:func:`human_select` writes an epoch's support pairs to the station's queue (:mod:`spal.annotation.store`),
follows the answers that the server logs and, when the step closes, applies them to the run's constraint graph,
budget and :class:`spal.active.AnnotationLog` (plain answer records only: an undo must be able to take an
answer back until training starts, and the run's log stays a list of answers every reader can take at face
value).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from spal.active.annotations import AnnotationLog, utc_now
from spal.active.constraints import ConstraintGraph
from spal.active.kinds import KINDS
from spal.annotation.store import (
    ANSWERED,
    KNOWN,
    PENDING,
    QUEUE_VERSION,
    SKIPPED,
    EpochState,
    PairKey,
    StationFiles,
    describe_pair,
    file_stamp,
    pair_id,
    pair_key,
    pair_status,
    read_events,
    station_lock,
)
from spal.atomic import atomic_write_text
from spal.datasets.base import Record

__all__ = ["SelectionSession", "human_select", "open_selection"]

logger = logging.getLogger(__name__)


def _unknown_candidates(
    plan: Sequence[tuple[int, int, str]], constraints: ConstraintGraph
) -> list[tuple[int, int, str]]:
    """The planned pairs worth asking: not trivial, not known, each unordered pair once.

    A repeat of a pair would be known by the time it came up, as in :func:`spal.active.select_support_pairs`.
    """
    seen: set[PairKey] = set()
    kept = []
    for a, b, kind in plan:
        key = pair_key(int(a), int(b))
        if a != b and key not in seen and not constraints.known(a, b):
            seen.add(key)
            kept.append((int(a), int(b), kind))
    return kept


def _build_pairs(
    epoch: int,
    candidates: Sequence[tuple[int, int, str]],
    labels: np.ndarray,
    features: Any,
    records: Sequence[Record],
) -> list[dict[str, Any]]:
    """The queue entries of ``candidates``; ``features`` ``(n, d)`` numpy array or torch tensor."""
    if not candidates:
        return []
    left = [int(a) for a, _, _ in candidates]
    right = [int(b) for _, b, _ in candidates]
    distances = ((features[left] - features[right]) ** 2).sum(1).tolist()
    pairs = []
    for index, ((a, b, kind), distance) in enumerate(zip(candidates, distances)):
        a, b = int(a), int(b)
        pairs.append(
            {
                "id": pair_id(epoch, index),
                "a": a,
                "b": b,
                "kind": kind,
                "reason": describe_pair(kind, int(labels[a]), int(labels[b]), float(distance)),
                "paths": [str(records[a][0]), str(records[b][0])],
                "camids": [int(records[a][2]), int(records[b][2])],
                "status": PENDING,
            }
        )
    return pairs


def _counts(pairs: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys((PENDING, ANSWERED, SKIPPED, KNOWN), 0)
    for pair in pairs:
        counts[pair["status"]] += 1
    return counts


@dataclass
class SelectionSession:
    """The trainer's side of one open queue: it follows the events, keeps the queue file current, and closes.

    Made by :func:`open_selection`; :func:`human_select` drives it (refresh until done, close, commit).
    """

    files: StationFiles
    queue: dict[str, Any]
    state: EpochState
    stamp: tuple[int, int] | None = None
    written: str = field(default="")

    @property
    def counts(self) -> dict[str, int]:
        """Queued pairs by status (``pending``, ``answered``, ``skipped``, ``known``)."""
        return self.queue["counts"]

    @property
    def done(self) -> bool:
        """No pair is pending, or the budget is spent."""
        return self.state.remaining <= 0 or self.counts[PENDING] == 0

    def refresh(self, force: bool = False) -> None:
        """Re-read the events if they changed (always when ``force``); update the statuses and queue file."""
        stamp = file_stamp(self.files.events)
        if not force and stamp == self.stamp:
            return
        with station_lock(self.files):
            self.stamp = file_stamp(self.files.events)
            self.state.sync(read_events(self.files))
            self._write()

    def close(self) -> None:
        """Apply the last events and mark the queue closed, atomically with respect to server appends."""
        with station_lock(self.files):
            self.state.sync(read_events(self.files))
            self.queue["status"] = "closed"
            self._write()

    def commit(self, constraints: ConstraintGraph, budget: Any, log: AnnotationLog) -> list[tuple[int, int, bool]]:
        """Apply the epoch's answers to the caller's graph and budget; append the new ones to the run's log.

        Call after :meth:`close`. Returns the applied answers ``(a, b, same)`` in order.
        """
        epoch = self.state.epoch
        logged = {pair_key(r["a"], r["b"]) for r in log.records() if r.get("epoch") == epoch}
        for record in self.state.applied:
            a, b, same = int(record["a"]), int(record["b"]), bool(record["same"])
            constraints.add_answer(a, b, same)
            budget.remaining -= 1
            if pair_key(a, b) not in logged:
                log.append(
                    {
                        "epoch": epoch,
                        "a": a,
                        "b": b,
                        "same": same,
                        "kind": record["kind"],
                        "annotator": record["annotator"],
                        "time": record["time"],
                        "paths": record["paths"],
                    }
                )
        return self.state.answers()

    def _write(self) -> None:
        for pair in self.queue["pairs"]:
            pair["status"] = pair_status(pair, self.state)
        self.queue["budget_remaining"] = self.state.remaining
        self.queue["counts"] = _counts(self.queue["pairs"])
        text = json.dumps(self.queue, sort_keys=True)
        if text != self.written:
            self.queue["updated"] = utc_now()
            atomic_write_text(self.files.queue, json.dumps(self.queue))
            self.written = text


def open_selection(
    epoch: int,
    candidates: Sequence[tuple[int, int, str]],
    labels: np.ndarray,
    features: Any,
    constraints: ConstraintGraph,
    budget: Any,
    records: Sequence[Record],
    logs_dir: str | os.PathLike[str],
) -> SelectionSession:
    """Write the epoch's base graph and queue of ``candidates`` and apply the epoch's events already logged.

    Args:
        candidates: ``(a, b, kind)`` in the order they are to be asked; trivial, known and repeated pairs are
            dropped here.
        labels, features, records: as in :func:`human_select` (for the reasons, image paths and cameras).
        constraints, budget: the graph and budget at the epoch's start; read, not changed.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if len(records) != n or constraints.n != n:
        raise ValueError(
            f"the annotation station needs one train record and one graph point per label: got {n} labels, "
            f"{len(records)} records and a graph of {constraints.n} points; pass the train records of the "
            "data set being clustered"
        )
    files = StationFiles.of(logs_dir)
    base_state = constraints.state_dict()
    atomic_write_text(files.graph(epoch), json.dumps(base_state))
    queue = {
        "version": QUEUE_VERSION,
        "epoch": epoch,
        "status": "open",
        "num_images": n,
        "budget_start": int(budget.remaining),
        "budget_total": int(getattr(budget, "total", budget.remaining)),
        "pairs": _build_pairs(epoch, _unknown_candidates(candidates, constraints), labels, features, records),
    }
    session = SelectionSession(files, queue, EpochState(base_state, epoch, int(budget.remaining)))
    session.refresh(force=True)
    # Base graphs older than the previous epoch's cannot be read any more: the queue file has moved on.
    for old in files.root.glob("graph-e*.json"):
        if old.name not in (files.graph(epoch).name, files.graph(epoch - 1).name):
            old.unlink(missing_ok=True)
    return session


def human_select(
    epoch: int,
    labels: np.ndarray,
    features: Any,
    constraints: ConstraintGraph,
    budget: Any,
    log: AnnotationLog,
    records: Sequence[Record],
    logs_dir: str | os.PathLike[str],
    timeout: float | None = None,
    poll: float = 0.2,
    progress: bool = True,
    kinds: Sequence[str] = KINDS,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[tuple[int, int, bool]]:
    """Ask people the epoch's support pairs through the annotation station; the human counterpart of
    :func:`spal.active.select_support_pairs`.

    Computes the dual-uncertainty candidates (:func:`spal.active.plan_support_pairs`), drops the trivial and
    known ones, writes the queue to ``<logs_dir>/annotation/queue.json`` and waits for the answers the server
    logs (``spal annotate --logs-dir DIR``, or the server this process runs). Each answer is applied to the
    epoch's graph at once and costs 1; queued pairs that become known by propagation leave the queue (never
    shown); a skipped pair costs nothing and is not offered again this epoch; an undo takes an answer back
    (the graph is replayed without it). Stops when no queued pair is pending, the budget is spent or
    ``timeout`` seconds pass (unanswered pairs stay unknown and cost nothing). Answers already logged for this
    epoch (before a crash) are applied, never asked again.

    When it returns, the epoch's answers are applied to ``constraints`` (``add_answer``, in order), charged to
    ``budget.remaining`` and appended to ``log`` as plain answer records (none that is already there).

    Args:
        epoch: the epoch number (it scopes pair ids and events).
        labels: ``(n,)`` int cluster labels, ``-1`` = outlier.
        features: ``(n, d)`` L2-normalised memory features (torch tensor or numpy array).
        constraints: the run's graph as it was at the epoch's start (e.g. the previous epoch's checkpoint).
        budget: any object with an int ``remaining``; its value at the epoch's start.
        log: the run's annotation log.
        records: the ``n`` train records ``(path, pid, camid)``: image paths and cameras for the page (the pid
            is never shown).
        logs_dir: the run's logs dir.
        timeout: seconds to wait for answers; ``None``: until every pair is settled or the budget is spent.
        poll: seconds between checks of the event log.
        progress: show a tqdm progress line.
        kinds: the candidate kinds to ask (``"positive"``, ``"negative"``; both for DUS).
        neighbours: the epoch's k-NN table ``(sims, idx)`` of ``features``, reused instead of a new search.

    Returns:
        The answered pairs ``(a, b, same)`` applied this epoch, in order.
    """
    # Imported here: the selection needs torch and faiss, which the annotation station never loads.
    from spal.active.selection import plan_support_pairs

    candidates = plan_support_pairs(np.asarray(labels), features, kinds=kinds, neighbours=neighbours)
    session = open_selection(epoch, candidates, labels, features, constraints, budget, records, logs_dir)
    if not session.done:
        logger.info(
            "epoch %d: %d support pairs wait for a human answer (%d questions left); serve them with "
            "`spal annotate --logs-dir %s`",
            epoch,
            session.counts[PENDING],
            session.state.remaining,
            logs_dir,
        )
    deadline = None if timeout is None else time.monotonic() + timeout
    total = len(session.queue["pairs"])
    with tqdm(total=total, desc=f"epoch {epoch} human answers", unit="pair", disable=not progress) as bar:
        shown = None
        while True:
            # Redraw only on a change: the wait can last hours, and stderr may be a log file.
            now = (total - session.counts[PENDING], session.state.remaining)
            if now != shown:
                bar.n, shown = now[0], now
                bar.set_postfix(budget=now[1], refresh=True)
            if session.done or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(poll)
            session.refresh()
    session.close()
    left = session.counts[PENDING]
    if left and session.state.remaining > 0:
        logger.warning(
            "epoch %d: %d support pairs left unanswered after %.0f s; they stay unknown and cost nothing",
            epoch,
            left,
            timeout or 0.0,
        )
    return session.commit(constraints, budget, log)
