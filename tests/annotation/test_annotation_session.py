"""The trainer side: human_select against answers posted through the API from another thread, its equivalence
with the ground-truth oracle, timeouts, restarts, and the pure event resolution underneath."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
from annotation_helpers import TOKEN, Background, Toy, answer_one, answer_with_truth, events_bytes
from fastapi.testclient import TestClient

from spal.active import (
    AnnotationLog,
    Budget,
    ConstraintGraph,
    GroundTruthOracle,
    plan_support_pairs,
    select_support_pairs,
)
from spal.annotation import create_app, human_select, make_human_select
from spal.annotation.session import open_selection
from spal.annotation.store import (
    EpochState,
    StationFiles,
    append_event,
    epoch_view,
    last_action,
    pair_key,
    parse_pair_id,
    read_events,
    read_queue,
    station_lock,
)

# A second clustering of the toy set, for a second epoch: image 4 with its identity, 11 in cluster 2.
LABELS_EPOCH_1 = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2], dtype=np.int64)


def run_human(toy: Toy, graph: ConstraintGraph, budget: Budget, epoch: int = 0, labels=None, **kwargs) -> Background:
    log = AnnotationLog(toy.logs_dir / "annotations.jsonl")
    labels = toy.labels if labels is None else labels
    kwargs = {"timeout": 20.0, "poll": 0.01, "progress": False, **kwargs}
    return Background(
        human_select, epoch, labels, toy.features, graph, budget, log, toy.records, toy.logs_dir, **kwargs
    )


def assert_same_graph(graph: ConstraintGraph, reference: ConstraintGraph) -> None:
    assert graph.answers() == reference.answers()
    np.testing.assert_array_equal(graph.component_ids(), reference.component_ids())
    np.testing.assert_array_equal(graph.cannot_link_edges(), reference.cannot_link_edges())
    assert graph.pairs_known() == reference.pairs_known()


# ---------------------------------------------------------------------------------------------- ground truth
@pytest.mark.parametrize("total", [100, 3])
def test_answering_through_the_api_equals_the_ground_truth_oracle(toy: Toy, client: TestClient, total: int) -> None:
    graph, budget = ConstraintGraph(toy.n), Budget(total)
    reference, reference_budget = ConstraintGraph(toy.n), Budget(total)
    oracle = GroundTruthOracle(toy.pids)
    for epoch, labels in enumerate((toy.labels, LABELS_EPOCH_1)):
        worker = run_human(toy, graph, budget, epoch=epoch, labels=labels)
        served = answer_with_truth(client, toy, worker)
        result = worker.join()
        expected = select_support_pairs(labels, toy.features, reference, reference_budget, oracle)
        assert result == expected
        assert len(served) == len(expected), "one question a pair asked, none beyond the budget"
        assert budget.remaining == reference_budget.remaining
        assert_same_graph(graph, reference)
    assert budget.remaining == max(0, total - len(reference.answers()))
    assert reference.answers(), "the toy problem must ask something"
    # The run's log holds plain answer records, one a question, in order.
    logged = AnnotationLog(toy.logs_dir / "annotations.jsonl").records()
    assert [(r["a"], r["b"], r["same"]) for r in logged] == reference.answers()
    assert all(r["annotator"] == "alice" and "event" not in r and len(r["paths"]) == 2 for r in logged)


def test_pairs_known_before_the_epoch_or_repeated_are_not_queued(toy: Toy, client: TestClient) -> None:
    plan = plan_support_pairs(toy.labels, toy.features)
    a, b, _ = plan[0]
    graph = ConstraintGraph(toy.n)
    graph.add_answer(a, b, False)
    session = open_selection(0, plan + plan[:1], toy.labels, toy.features, graph, Budget(10), toy.records, toy.logs_dir)
    keys = [pair_key(p["a"], p["b"]) for p in session.queue["pairs"]]
    assert pair_key(a, b) not in keys and len(keys) == len(set(keys))
    assert graph.answers() == [(a, b, False)], "opening a queue changes nothing in the caller's graph"


# --------------------------------------------------------------------------------------------------- timeout
def test_timeout_leaves_unanswered_pairs_unknown_and_uncharged(toy: Toy, client: TestClient) -> None:
    graph, budget = ConstraintGraph(toy.n), Budget(50)
    worker = run_human(toy, graph, budget, timeout=1.0)
    first = None
    while first is None:
        first = answer_one(client, toy)
    result = worker.join()
    assert len(result) == 1 and budget.remaining == 49 and graph.answers() == result
    queue = read_queue(toy.files)
    assert queue["status"] == "closed"
    statuses = [p["status"] for p in queue["pairs"]]
    assert statuses.count("answered") == 1 and statuses.count("pending") >= 2
    for pair in queue["pairs"]:
        if pair["status"] == "pending":
            assert not graph.known(pair["a"], pair["b"])
    before = events_bytes(toy)
    late = client.post("/api/answer", json={"pair_id": queue["pairs"][-1]["id"], "same": True, "annotator": "x"})
    assert late.status_code == 410 and events_bytes(toy) == before
    assert client.get("/api/next", params={"annotator": "x"}).json()["done"] is True


def test_timeout_without_any_answer_returns_nothing(toy: Toy) -> None:
    graph, budget = ConstraintGraph(toy.n), Budget(50)
    started = time.monotonic()
    result = run_human(toy, graph, budget, timeout=0.2).join()
    assert time.monotonic() - started < 5
    assert result == [] and budget.remaining == 50 and graph.pairs_known() == 0
    assert AnnotationLog(toy.logs_dir / "annotations.jsonl").records() == []


def test_nothing_is_queued_when_the_budget_is_spent(toy: Toy) -> None:
    graph, budget = ConstraintGraph(toy.n), Budget(0)
    assert run_human(toy, graph, budget, timeout=None).join() == []
    assert read_queue(toy.files)["status"] == "closed"


# -------------------------------------------------------------------------------------------------- restarts
def test_a_restart_of_trainer_and_server_keeps_the_answers_and_asks_nothing_twice(toy: Toy) -> None:
    plan = plan_support_pairs(toy.labels, toy.features)
    # Run 1: the queue is open, two answers arrive, then both processes die: nothing closed or committed,
    # and the last event line is torn.
    open_selection(0, plan, toy.labels, toy.features, ConstraintGraph(toy.n), Budget(100), toy.records, toy.logs_dir)
    client = TestClient(create_app(toy.logs_dir, TOKEN), headers={"X-SPAL-Token": TOKEN})
    before_crash = [answer_one(client, toy), answer_one(client, toy)]
    assert None not in before_crash
    with open(toy.files.events, "ab") as handle:
        handle.write(b'{"event": "answer", "epo')
    # Run 2: a new server, and the trainer again from the epoch's start (the last checkpoint).
    client = TestClient(create_app(toy.logs_dir, TOKEN), headers={"X-SPAL-Token": TOKEN})
    graph, budget = ConstraintGraph(toy.n), Budget(100)
    worker = run_human(toy, graph, budget)
    after_restart = answer_with_truth(client, toy, worker)
    result = worker.join()
    assert not set(before_crash) & set(after_restart), "a question answered before the crash was asked again"
    reference, reference_budget = ConstraintGraph(toy.n), Budget(100)
    assert result == select_support_pairs(
        toy.labels, toy.features, reference, reference_budget, GroundTruthOracle(toy.pids)
    )
    assert_same_graph(graph, reference)
    assert budget.remaining == reference_budget.remaining
    answered = [pair_key(e["a"], e["b"]) for e in read_events(toy.files) if e["event"] == "answer"]
    assert len(answered) == len(set(answered)) == len(result)


def test_rerunning_a_committed_epoch_asks_nothing_and_logs_nothing_twice(toy: Toy, client: TestClient) -> None:
    worker = run_human(toy, ConstraintGraph(toy.n), Budget(100))
    answer_with_truth(client, toy, worker)
    first = worker.join()
    # A crash after the epoch's answers reached the log but before the checkpoint: the epoch runs again.
    graph, budget = ConstraintGraph(toy.n), Budget(100)
    again = run_human(toy, graph, budget, timeout=5.0).join()
    assert again == first and graph.answers() == first and budget.remaining == 100 - len(first)
    logged = AnnotationLog(toy.logs_dir / "annotations.jsonl").records()
    assert [(r["a"], r["b"], r["same"]) for r in logged] == first


# ------------------------------------------------------------------------------------------------ pure parts
def _event(i: int, event: str = "answer", epoch: int = 0, who: str = "alice", **extra) -> dict:
    return {
        "id": f"x{i}",
        "event": event,
        "epoch": epoch,
        "annotator": who,
        "a": i,
        "b": i + 1,
        "kind": "positive",
        **extra,
    }


def test_epoch_view_and_last_action_resolve_undos() -> None:
    events = [
        _event(0, same=True),
        _event(1, "skip"),
        _event(2, same=False, who="bob"),
        _event(3, same=True, epoch=1),
        _event(4, same=True),
        {"id": "u1", "event": "undo", "target": "x4", "epoch": 0, "annotator": "alice", "a": 4, "b": 5},
    ]
    view = epoch_view(events, 0)
    assert [e["id"] for e in view.answers] == ["x0", "x2"]
    assert set(view.answered) == {(0, 1), (2, 3)} and set(view.skipped) == {(1, 2)}
    assert last_action(events, 0, "alice")["id"] == "x1"
    assert last_action(events, 0, "bob")["id"] == "x2"
    assert last_action(events, 1, "bob") is None
    assert [e["id"] for e in epoch_view(events, 1).answers] == ["x3"]


def test_epoch_state_replays_incrementally_and_rebuilds_after_an_undo() -> None:
    base = ConstraintGraph(6)
    base.add_answer(4, 5, False)
    state = EpochState(base.state_dict(), 0, budget_start=3)
    events = [_event(0, same=True), _event(1, same=True)]
    state.sync(events)
    assert state.answers() == [(0, 1, True), (1, 2, True)] and state.remaining == 1
    graph_before = state.graph
    events.append(_event(1, same=False, who="bob") | {"id": "dup", "a": 0, "b": 2})
    state.sync(events)
    assert state.graph is graph_before, "new events are applied incrementally"
    assert state.answers() == [(0, 1, True), (1, 2, True)], "a known pair is not applied and costs nothing"
    events.append({"id": "u", "event": "undo", "target": "x1", "epoch": 0, "annotator": "alice", "a": 1, "b": 2})
    state.sync(events)
    # Replayed from the base without x1: now the (0, 2) answer applies.
    assert state.answers() == [(0, 1, True), (0, 2, False)]
    assert state.graph.relation(4, 5) == -1 and state.graph.relation(1, 2) == -1
    events.extend([_event(3, same=True), _event(4, same=True) | {"b": 0}])
    state.sync(events)
    assert state.remaining == 0 and len(state.answers()) == 3, "answers beyond the budget are not applied"


def test_append_event_repairs_a_torn_line_and_reads_it_back(toy: Toy) -> None:
    files = StationFiles.of(toy.logs_dir)
    with station_lock(files):
        first = append_event(files, {"event": "skip", "epoch": 0, "a": 1, "b": 2})
    with open(files.events, "ab") as handle:
        handle.write(b'{"event": "sk')
    with station_lock(files):
        second = append_event(files, {"event": "skip", "epoch": 0, "a": 2, "b": 3})
    assert [e["id"] for e in read_events(files)] == [first["id"], second["id"]]
    assert all(json.loads(line) for line in files.events.read_text().splitlines())


def test_pair_ids_and_inputs_are_checked(toy: Toy) -> None:
    assert parse_pair_id("e12p3") == (12, 3)
    for bad in ("e1", "p3", "e1p", "ex1p2", "e1p2x", "../e1p2"):
        assert parse_pair_id(bad) is None
    with pytest.raises(ValueError, match="train records"):
        open_selection(
            0, [], toy.labels, toy.features, ConstraintGraph(toy.n), Budget(1), toy.records[:-1], toy.logs_dir
        )


def test_make_human_select_follows_the_config(toy: Toy) -> None:
    cfg = SimpleNamespace(logs_dir=str(toy.logs_dir), annotation_timeout=3.0, selection="positive-only")
    selector = make_human_select(cfg)
    assert selector.timeout == 3.0 and selector.kinds == ("positive",)
    with pytest.raises(ValueError, match="ground-truth"):
        make_human_select(SimpleNamespace(logs_dir="x", annotation_timeout=None, selection="random"))
