"""AnnotationLog (durable append-only answers), GroundTruthOracle and LoggedOracle (replay after a crash)."""

from __future__ import annotations

import json
import os
from datetime import datetime

import numpy as np
import pytest
import torch

from spal.active import AnnotationLog, GroundTruthOracle, LoggedOracle, Oracle
from spal.active.annotations import read_records


def record(a: int, b: int, same: bool, epoch: int = 0, kind: str = "positive") -> dict:
    return {"epoch": epoch, "a": a, "b": b, "same": same, "kind": kind, "annotator": "test"}


def file_lines(path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


class SpyOracle:
    def __init__(self, pids):
        self.pids = pids
        self.calls: list[tuple[int, int]] = []

    def __call__(self, a: int, b: int) -> bool:
        self.calls.append((a, b))
        return self.pids[a] == self.pids[b]


def test_appends_are_fsynced_lines_and_reload(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "run" / "annotations.jsonl"
    log = AnnotationLog(path)
    assert log.records() == [] and not path.exists()
    written = log.append(record(3, 1, True))
    assert len(synced) >= 1
    before = len(synced)
    log.append({**record(2, 5, False), "paths": ["x.jpg", "y.jpg"]})
    assert len(synced) > before  # every append is synced, not only the first
    assert datetime.fromisoformat(written["time"]).utcoffset().total_seconds() == 0
    lines = file_lines(path)
    assert [(r["a"], r["b"], r["same"]) for r in lines] == [(3, 1, True), (2, 5, False)]
    reopened = AnnotationLog(path)
    assert reopened.records() == log.records() == lines
    assert reopened.lookup(1, 3)["same"] is True and reopened.lookup(5, 2)["paths"] == ["x.jpg", "y.jpg"]
    assert reopened.lookup(1, 2) is None and len(reopened) == 2


def test_latest_record_of_a_pair_wins(tmp_path):
    log = AnnotationLog(tmp_path / "a.jsonl")
    log.append(record(1, 2, True))
    log.append(record(2, 1, False, epoch=4))
    assert log.lookup(1, 2)["same"] is False and log.lookup(1, 2)["epoch"] == 4


def test_truncated_last_line_is_ignored_then_cut_off(tmp_path, caplog):
    path = tmp_path / "a.jsonl"
    log = AnnotationLog(path)
    log.append(record(0, 1, True))
    log.append(record(1, 2, False))
    with open(path, "ab") as handle:
        handle.write(b'{"epoch": 0, "a": 7, "b"')  # a crash in the middle of a write
    with caplog.at_level("WARNING"):
        recovered = AnnotationLog(path)
    assert "truncated" in caplog.text
    assert [(r["a"], r["b"]) for r in recovered.records()] == [(0, 1), (1, 2)]
    assert recovered.lookup(7, 0) is None
    recovered.append(record(4, 5, True))
    assert [(r["a"], r["b"]) for r in file_lines(path)] == [(0, 1), (1, 2), (4, 5)]
    assert [(r["a"], r["b"]) for r in AnnotationLog(path).records()] == [(0, 1), (1, 2), (4, 5)]


def test_complete_record_without_newline_is_kept_and_next_append_starts_a_new_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({**record(0, 1, True), "time": "2026-01-01T00:00:00+00:00"}))
    log = AnnotationLog(path)
    assert len(log) == 1
    log.append(record(2, 3, False))
    assert [(r["a"], r["b"]) for r in file_lines(path)] == [(0, 1), (2, 3)]


def test_damage_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        AnnotationLog(path)
    records, valid = read_records(tmp_path / "missing.jsonl")
    assert (records, valid) == ([], 0)


@pytest.mark.parametrize(
    "bad",
    [
        {"a": 1, "b": 2, "same": True, "kind": "positive", "annotator": "x"},  # no epoch
        {**record(1, 2, True), "kind": "sideways"},
        {**record(1, 2, True), "same": 1},
        {**record(1, 2, True), "a": True},
    ],
)
def test_invalid_records_are_refused(tmp_path, bad):
    log = AnnotationLog(tmp_path / "a.jsonl")
    with pytest.raises(ValueError):
        log.append(bad)
    assert len(log) == 0


def test_a_second_writer_is_detected(tmp_path):
    path = tmp_path / "a.jsonl"
    log = AnnotationLog(path)
    log.append(record(0, 1, True))
    AnnotationLog(path).append(record(1, 2, True))
    with pytest.raises(RuntimeError, match="another process"):
        log.append(record(2, 3, True))


def test_ground_truth_oracle():
    oracle = GroundTruthOracle(torch.tensor([5, 5, 7]))
    assert isinstance(oracle, Oracle)
    assert oracle(0, 1) is True and oracle(1, 2) is False and oracle(np.int64(2), 2) is True
    assert oracle.num_calls == 3
    with pytest.raises(IndexError):
        oracle(0, 3)
    with pytest.raises(IndexError):
        oracle(-1, 0)
    with pytest.raises(ValueError):
        GroundTruthOracle(np.zeros((2, 2)))


def test_logged_oracle_logs_then_replays_without_asking_again(tmp_path):
    pids = [0, 0, 1, 1]
    path = tmp_path / "annotations.jsonl"
    inner = SpyOracle(pids)
    oracle = LoggedOracle(inner, AnnotationLog(path), epoch=3, paths=["p0", "p1", "p2", "p3"])
    oracle.note_kind(1, 0, "positive")
    assert oracle(0, 1) is True
    assert oracle(1, 2) is False
    assert inner.calls == [(0, 1), (1, 2)]
    assert (oracle.num_asked, oracle.num_replayed) == (2, 0)
    logged = file_lines(path)
    assert [(r["a"], r["b"], r["same"], r["kind"], r["epoch"]) for r in logged] == [
        (0, 1, True, "positive", 3),
        (1, 2, False, "unknown", 3),
    ]
    assert logged[0]["paths"] == ["p0", "p1"] and logged[0]["annotator"] == "ground-truth"

    # After a crash: a fresh process reopens the log and is asked the same pairs (in any orientation) again.
    inner_again = SpyOracle(pids)
    resumed = LoggedOracle(inner_again, AnnotationLog(path), epoch=3, kind_of=lambda a, b: "negative")
    assert resumed(1, 0) is True and resumed(2, 1) is False
    assert inner_again.calls == []
    assert resumed(2, 3) is True
    assert inner_again.calls == [(2, 3)]
    assert (resumed.num_asked, resumed.num_replayed) == (1, 2)
    assert file_lines(path)[-1]["kind"] == "negative" and len(file_lines(path)) == 3


def test_logged_oracle_never_returns_an_unlogged_answer(tmp_path):
    class FailingLog(AnnotationLog):
        def append(self, record, sync=True):
            raise OSError("disk full")

    oracle = LoggedOracle(SpyOracle([0, 0]), FailingLog(tmp_path / "a.jsonl"), epoch=0)
    with pytest.raises(OSError, match="disk full"):
        oracle(0, 1)
    assert oracle.num_asked == 0


def test_deferred_answers_are_written_at_once_and_fsynced_by_one_sync(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "run" / "annotations.jsonl"
    log = AnnotationLog(path)
    oracle = LoggedOracle(SpyOracle([0, 0, 1, 1]), log, epoch=0, sync_each=False)
    assert [oracle(0, 1), oracle(1, 2), oracle(2, 3)] == [True, False, True]
    assert synced == []  # nothing fsynced while the selection asks
    assert [(r["a"], r["b"]) for r in file_lines(path)] == [(0, 1), (1, 2), (2, 3)]  # but every line is written
    log.sync()
    assert len(synced) == 2  # the file once, and its folder (an unsynced append created it)
    log.sync()
    assert len(synced) == 2  # nothing new: nothing to do
    log.append(record(0, 3, False), sync=False)
    log.sync()
    assert len(synced) == 3  # the file only: its folder entry is already durable
    assert [(r["a"], r["b"]) for r in AnnotationLog(path).records()] == [(0, 1), (1, 2), (2, 3), (0, 3)]


def test_a_human_answer_is_still_fsynced_on_its_own(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    log = AnnotationLog(tmp_path / "annotations.jsonl")
    LoggedOracle(SpyOracle([0, 0]), log, epoch=0, annotator="alice")(0, 1)
    assert len(synced) == 2  # the file and the new file's folder, before the answer is returned
