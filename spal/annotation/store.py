"""The annotation station's store: the files under ``<logs_dir>/annotation/`` and how both sides read them.

A selection step with a human oracle is event-sourced through the run's logs dir, so the answering page can
be served from inside the training process or from a separate ``spal annotate --logs-dir DIR`` process, and
either side can crash and restart without losing or repeating a question. ``<logs_dir>/annotation/`` holds:

- ``queue.json``: the current epoch's support pairs (ids, point indices, kind, reason, image paths, cameras, a
  status each) and the budget; rewritten atomically by the trainer whenever something changes.
- ``graph-e<epoch>.json``: the constraint graph as it was when the epoch's queue was made (the *base* graph);
  one file an epoch, so a server still reading the previous queue never meets the next epoch's graph.
- ``events.jsonl``: what the annotators did, one JSON object a line, appended under a lock by the server:
  ``answer`` (with ``same``), ``skip`` and ``undo`` (with ``target``, the ``id`` of the event it takes back).
- ``lock``: the ``fcntl.flock`` file that serialises appends and the trainer's closing of the queue.

Both sides compute the epoch's graph the same way (:class:`EpochState`): the base graph, then every answer
event of the epoch that was not undone, in log order, applied when its pair is still unknown and budget is
left. So the server's view and the trainer's agree without shared memory, and answering the queue in order
gives the graph that :func:`spal.active.select_support_pairs` builds with an oracle giving the same answers.

The run's :class:`spal.active.AnnotationLog` only receives the epoch's final answers (plain answer records)
when the selection step closes: an undo must be able to take an answer back until training starts, and the
run's log stays a list of answers that every reader can take at face value.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spal.active.annotations import read_records, utc_now
from spal.active.constraints import ConstraintGraph

__all__ = [
    "ANNOTATION_DIR",
    "ANSWER",
    "ANSWERED",
    "EpochState",
    "EpochView",
    "KNOWN",
    "PENDING",
    "PairKey",
    "QUEUE_VERSION",
    "SKIP",
    "SKIPPED",
    "StationFiles",
    "UNDO",
    "append_event",
    "describe_pair",
    "epoch_view",
    "event_type",
    "file_stamp",
    "last_action",
    "pair_id",
    "pair_key",
    "pair_status",
    "parse_pair_id",
    "read_base_state",
    "read_events",
    "read_queue",
    "station_lock",
    "write_private_text",
]

#: Folder under the logs dir that holds the station's files.
ANNOTATION_DIR = "annotation"
#: Queue format version, bumped on incompatible changes.
QUEUE_VERSION = 1

PENDING, ANSWERED, SKIPPED, KNOWN = "pending", "answered", "skipped", "known"
ANSWER, SKIP, UNDO = "answer", "skip", "undo"

PairKey = tuple[int, int]


@dataclass(frozen=True)
class StationFiles:
    """The paths of one run's annotation station (all under ``<logs_dir>/annotation/``)."""

    root: Path

    @classmethod
    def of(cls, logs_dir: str | os.PathLike[str]) -> StationFiles:
        return cls(Path(logs_dir) / ANNOTATION_DIR)

    @property
    def queue(self) -> Path:
        return self.root / "queue.json"

    def graph(self, epoch: int) -> Path:
        return self.root / f"graph-e{epoch}.json"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def link(self) -> Path:
        """The page's URL with its access token, readable by the run's user only (the logs are not)."""
        return self.root / "station-url"


# ---------------------------------------------------------------------------------------------- pure helpers
def pair_key(a: int, b: int) -> PairKey:
    """The unordered pair ``{a, b}`` as ``(min, max)``."""
    return (a, b) if a <= b else (b, a)


def pair_id(epoch: int, index: int) -> str:
    """The id of the ``index``-th queued pair of ``epoch``, e.g. ``"e3p12"`` (the epoch makes ids stale)."""
    return f"e{epoch}p{index}"


def parse_pair_id(text: str) -> tuple[int, int] | None:
    """``(epoch, index)`` of a pair id made by :func:`pair_id`, or ``None`` when ``text`` is not one."""
    if not text.startswith("e") or "p" not in text:
        return None
    epoch, _, index = text[1:].partition("p")
    if not (epoch.isdigit() and index.isdigit()):
        return None
    return int(epoch), int(index)


def describe_pair(kind: str, cluster_a: int, cluster_b: int, distance: float) -> str:
    """The sentence the page shows for why a pair is asked (SPEC section 3.3).

    Args:
        kind: ``"positive"`` (the farthest pair inside a cluster) or ``"negative"`` (a cluster member and the
            nearest point outside it).
        cluster_a, cluster_b: the clusters of the two images (``-1`` = outlier).
        distance: their squared Euclidean distance on the memory features (0 .. 4 for unit vectors).
    """
    if kind == "positive":
        return (
            f"Uncertain positive: both images are in cluster {cluster_a}, but they are its two most distant "
            f"members (squared distance {distance:.2f})."
        )
    where = "an outlier" if cluster_b < 0 else f"in cluster {cluster_b}"
    return (
        f"Uncertain negative: the left image is in cluster {cluster_a}; the right one, {where}, is the "
        f"nearest image outside that cluster (squared distance {distance:.2f})."
    )


def event_type(record: dict[str, Any]) -> str:
    """The event of a station record (``answer`` when the key is absent)."""
    return str(record.get("event", ANSWER))


@dataclass(frozen=True)
class EpochView:
    """What the annotators did in one epoch, undone events removed.

    Attributes:
        answers: the answer events in effect, in log order.
        answered: pair key -> its answer event in effect.
        skipped: pair key -> its skip event in effect.
    """

    answers: list[dict[str, Any]]
    answered: dict[PairKey, dict[str, Any]]
    skipped: dict[PairKey, dict[str, Any]]


def _actions(events: Sequence[dict[str, Any]], epoch: int) -> list[dict[str, Any]]:
    undone = {r.get("target") for r in events if event_type(r) == UNDO}
    return [
        r for r in events if r.get("epoch") == epoch and event_type(r) in (ANSWER, SKIP) and r.get("id") not in undone
    ]


def epoch_view(events: Sequence[dict[str, Any]], epoch: int) -> EpochView:
    """Resolve the station's events of ``epoch``: an ``undo`` removes the event whose ``id`` it targets."""
    actions = _actions(events, epoch)
    answers = [r for r in actions if event_type(r) == ANSWER]
    return EpochView(
        answers=answers,
        answered={pair_key(r["a"], r["b"]): r for r in answers},
        skipped={pair_key(r["a"], r["b"]): r for r in actions if event_type(r) == SKIP},
    )


def last_action(events: Sequence[dict[str, Any]], epoch: int, annotator: str) -> dict[str, Any] | None:
    """The latest answer or skip of ``annotator`` in ``epoch`` still in effect (what an undo takes back)."""
    mine = [r for r in _actions(events, epoch) if r.get("annotator") == annotator]
    return mine[-1] if mine else None


class EpochState:
    """The constraint graph and budget of one selection step, replayed from the station's events.

    Start from the base graph (the state at the epoch's start) and apply every answer in effect, in log order,
    when its pair is still unknown and budget is left; each applied answer costs 1. An undo that removes an
    answer restarts the replay from the base: answers after it may now apply (their pair is unknown again) or
    not. :meth:`sync` is incremental otherwise. The server and the trainer replay the same events the same
    way, so they agree on the graph, the budget and what is pending.

    Args:
        base_state: :meth:`ConstraintGraph.state_dict` of the graph at the epoch's start.
        epoch: the epoch whose events count.
        budget_start: questions left at the epoch's start.
    """

    def __init__(self, base_state: dict[str, Any], epoch: int, budget_start: int) -> None:
        self.base_state = base_state
        self.epoch = epoch
        self.budget_start = budget_start
        self.view = EpochView([], {}, {})
        self._reset()

    def _reset(self) -> None:
        self.graph = ConstraintGraph.from_state_dict(self.base_state)
        #: Applied answer events, in the order they were applied.
        self.applied: list[dict[str, Any]] = []
        self._seen: list[str] = []

    @property
    def remaining(self) -> int:
        """Questions left: the epoch's start budget minus the applied answers."""
        return self.budget_start - len(self.applied)

    def sync(self, events: Sequence[dict[str, Any]]) -> None:
        """Bring the graph up to date with ``events`` (the whole station log)."""
        self.view = epoch_view(events, self.epoch)
        ids = [r["id"] for r in self.view.answers]
        if ids[: len(self._seen)] != self._seen:
            self._reset()
        for record in self.view.answers[len(self._seen) :]:
            self._seen.append(record["id"])
            a, b = int(record["a"]), int(record["b"])
            if self.remaining > 0 and not self.graph.known(a, b):
                # A refusal (possible only without propagation) still costs the question, as in
                # select_support_pairs; the graph keeps the earlier answer and lists the refused one.
                self.graph.add_answer(a, b, bool(record["same"]))
                self.applied.append(record)

    def answers(self) -> list[tuple[int, int, bool]]:
        """The applied answers ``(a, b, same)`` in order."""
        return [(int(r["a"]), int(r["b"]), bool(r["same"])) for r in self.applied]


def pair_status(pair: dict[str, Any], state: EpochState) -> str:
    """``answered``, ``skipped``, ``known`` (by propagation, never shown) or ``pending`` for a queued pair."""
    key = pair_key(pair["a"], pair["b"])
    if key in state.view.answered:
        return ANSWERED
    if key in state.view.skipped:
        return SKIPPED
    if state.graph.known(pair["a"], pair["b"]):
        return KNOWN
    return PENDING


# ---------------------------------------------------------------------------------------------- file I/O
@contextmanager
def station_lock(files: StationFiles) -> Iterator[None]:
    """Hold the station's exclusive ``flock`` (between processes and, with a fresh descriptor, threads)."""
    files.root.mkdir(parents=True, exist_ok=True)
    with open(files.lock, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_private_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, readable and writable by this user only (mode 0600, also when it existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
    return path


def read_queue(files: StationFiles) -> dict[str, Any] | None:
    """The current queue, or ``None`` while no selection step has written one."""
    try:
        return json.loads(files.queue.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def read_base_state(files: StationFiles, epoch: int) -> dict[str, Any]:
    """The base graph state written for ``epoch``."""
    return json.loads(files.graph(epoch).read_text(encoding="utf-8"))


def read_events(files: StationFiles) -> list[dict[str, Any]]:
    """All station events in log order (a truncated last line from a crash is ignored)."""
    return read_records(files.events)[0]


def append_event(files: StationFiles, record: dict[str, Any]) -> dict[str, Any]:
    """Append one event (adding ``id`` and ``time``), flushed and fsync-ed; hold :func:`station_lock`.

    A truncated last line left by a crash is cut off first, so the new event starts a fresh line.
    """
    record = {"id": secrets.token_hex(8), "time": utc_now(), **record}
    files.root.mkdir(parents=True, exist_ok=True)
    valid = read_records(files.events)[1]
    with open(files.events, "ab") as handle:
        if handle.tell() != valid:
            handle.truncate(valid)
        handle.write((json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    return record


def file_stamp(path: Path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a file, ``None`` when it does not exist: a cheap "did it change" check."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns
