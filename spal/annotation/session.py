"""The training side of the annotation station: a human oracle for the support pairs (SPEC section 3.3).

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
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from spal.active.annotations import AnnotationLog, read_records, utc_now
from spal.active.constraints import ConstraintGraph
from spal.active.kinds import KINDS, STRATEGY_KINDS

__all__ = [
    "ANNOTATION_DIR",
    "EpochState",
    "EpochView",
    "HumanSelect",
    "PENDING",
    "SelectionSession",
    "StationFiles",
    "append_event",
    "describe_pair",
    "epoch_view",
    "file_stamp",
    "human_select",
    "last_action",
    "make_human_select",
    "open_selection",
    "pair_id",
    "pair_key",
    "pair_status",
    "parse_pair_id",
    "read_base_state",
    "read_events",
    "read_queue",
    "station_lock",
]

logger = logging.getLogger(__name__)

#: Folder under the logs dir that holds the station's files.
ANNOTATION_DIR = "annotation"
#: Queue format version, bumped on incompatible changes.
QUEUE_VERSION = 1

PENDING, ANSWERED, SKIPPED, KNOWN = "pending", "answered", "skipped", "known"
ANSWER, SKIP, UNDO = "answer", "skip", "undo"

PairKey = tuple[int, int]
Record = tuple[str, int, int]


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
        r
        for r in events
        if r.get("epoch") == epoch and event_type(r) in (ANSWER, SKIP) and r.get("id") not in undone
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


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


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


# ------------------------------------------------------------------------------------------ the trainer side
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

    def commit(
        self, constraints: ConstraintGraph, budget: Any, log: AnnotationLog
    ) -> list[tuple[int, int, bool]]:
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
            _write_json_atomic(self.files.queue, self.queue)
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
    _write_json_atomic(files.graph(epoch), base_state)
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

    Returns:
        The answered pairs ``(a, b, same)`` applied this epoch, in order.
    """
    # Imported here: the selection needs torch and faiss, which the annotation station never loads.
    from spal.active.selection import plan_support_pairs

    candidates = plan_support_pairs(np.asarray(labels), features, kinds=kinds)
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


class HumanSelect:
    """``--oracle human`` for the training loop: :func:`human_select` bound to a run, with the page served.

    The first call starts the server in this process (unless ``serve_page`` is false) and logs its URL with
    the address (the link with the access token goes to :attr:`StationFiles.link`, mode 0600); people may also
    run ``spal annotate --logs-dir DIR`` on the same logs dir.

    Args:
        logs_dir: the run's logs dir.
        timeout: seconds to wait for answers each epoch (``None``: until the queue is settled).
        serve_page: start the annotation server in this process.
        host, port: where that server listens (``port=0``: a free port).
        kinds: the candidate kinds to ask (see :func:`human_select`).
    """

    def __init__(
        self,
        logs_dir: str | os.PathLike[str],
        timeout: float | None = None,
        serve_page: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        kinds: Sequence[str] = KINDS,
    ) -> None:
        self.logs_dir = Path(logs_dir)
        self.timeout = timeout
        self.kinds = tuple(kinds)
        self.serve_page = serve_page
        self.host, self.port = host, port
        self.url: str | None = None
        self._stop: Callable[[], None] | None = None

    def __call__(
        self,
        *,
        epoch: int,
        labels: np.ndarray,
        features: Any,
        constraints: ConstraintGraph,
        budget: Any,
        log: AnnotationLog,
        records: Sequence[Record],
    ) -> list[tuple[int, int, bool]]:
        """Run :func:`human_select` for one epoch (keyword arguments as there)."""
        if self.serve_page and self._stop is None:
            from spal.annotation.server import serve

            self.url, self._stop = serve(self.logs_dir, host=self.host, port=self.port)
            # The token goes to a file only this user reads; the log (and train.log, readable by others) gets
            # the address and where the link is.
            link = write_private_text(StationFiles.of(self.logs_dir).link, self.url + "\n")
            logger.info(
                "annotation page (answer the support pairs here): %s; open the link with its access token "
                "written in %s (readable by you only)",
                self.url.split("?")[0],
                link,
            )
        return human_select(
            epoch,
            labels,
            features,
            constraints,
            budget,
            log,
            records,
            self.logs_dir,
            timeout=self.timeout,
            kinds=self.kinds,
        )

    def close(self) -> None:
        """Stop the in-process server, if one runs."""
        if self._stop is not None:
            self._stop()
            self._stop = None


def make_human_select(cfg: Any) -> HumanSelect:
    """The :class:`HumanSelect` of a training config (``logs_dir``, ``annotation_timeout``, ``selection``)."""
    # Random draws need no station: that ablation uses the ground-truth oracle.
    if cfg.selection not in STRATEGY_KINDS:
        raise ValueError(
            f"--oracle human supports --selection {', '.join(STRATEGY_KINDS)}, not "
            f"{cfg.selection!r}; use --oracle ground-truth for that strategy"
        )
    return HumanSelect(cfg.logs_dir, timeout=cfg.annotation_timeout, kinds=STRATEGY_KINDS[cfg.selection])
