"""ConstraintGraph (SPEC 3.4) against a brute-force closure of the answers."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spal.active import ConstraintGraph


def reference_relation(n: int, answers: list[tuple[int, int, bool]]) -> np.ndarray:
    """Dense (n, n) relation of accepted answers by brute force: 1 same, -1 different, 0 unknown.

    Answers are taken in order; one that contradicts the closure so far is refused, as SPEC 3.4 asks.
    """
    comp = list(range(n))
    cls: set[tuple[int, int]] = set()

    def relation(a: int, b: int) -> int:
        if comp[a] == comp[b]:
            return 1
        return -1 if (comp[a], comp[b]) in cls else 0

    for a, b, same in answers:
        if (same and relation(a, b) == -1) or (not same and relation(a, b) == 1):
            continue
        if same:
            old, new = comp[b], comp[a]
            comp = [new if c == old else c for c in comp]
            cls = {(new if x == old else x, new if y == old else y) for x, y in cls}
        else:
            cls |= {(comp[a], comp[b]), (comp[b], comp[a])}
    return np.array([[relation(a, b) for b in range(n)] for a in range(n)])


def relation_matrix(graph: ConstraintGraph) -> np.ndarray:
    return np.array([[graph.relation(a, b) for b in range(graph.n)] for a in range(graph.n)])


def graph_from(n: int, answers, propagation: bool = True) -> tuple[ConstraintGraph, list[bool]]:
    graph = ConstraintGraph(n, propagation=propagation)
    return graph, [graph.add_answer(a, b, same) for a, b, same in answers]


@st.composite
def truthful_case(draw):
    n = draw(st.integers(1, 12))
    pids = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n))
    return n, pids, [(a, b, pids[a] == pids[b]) for a, b in pairs]


@st.composite
def arbitrary_case(draw):
    n = draw(st.integers(1, 10))
    answers = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.booleans()), max_size=3 * n))
    return n, answers


@settings(max_examples=60, deadline=None)
@given(truthful_case())
def test_truthful_answers_are_accepted_and_agree_with_ground_truth(case):
    n, pids, answers = case
    graph, accepted = graph_from(n, answers)
    assert all(accepted)
    assert graph.contradictions == []
    rel = relation_matrix(graph)
    truth = np.where(np.equal.outer(pids, pids), 1, -1)
    known = rel != 0
    assert np.array_equal(rel[known], truth[known])
    assert np.array_equal(rel, reference_relation(n, answers))


@settings(max_examples=60, deadline=None)
@given(arbitrary_case())
def test_relation_equals_brute_force_closure_and_contradictions_change_nothing(case):
    n, answers = case
    graph = ConstraintGraph(n)
    for i, (a, b, same) in enumerate(answers):
        before = (relation_matrix(graph), graph.answers(), graph.pairs_known(), graph.component_ids())
        ok = graph.add_answer(a, b, same)
        expected_rel = reference_relation(n, answers[: i + 1])
        assert np.array_equal(relation_matrix(graph), expected_rel)
        contradicts = before[0][a, b] == (-1 if same else 1)
        assert ok == (not contradicts)
        if not ok:
            assert graph.contradictions[-1] == (a, b, same)
            assert np.array_equal(before[0], relation_matrix(graph))
            assert before[1] == graph.answers()
            assert before[2] == graph.pairs_known()
            assert np.array_equal(before[3], graph.component_ids())
    assert len(graph.contradictions) + len(graph.answers()) == len([x for x in answers if x[0] != x[1] or not x[2]])


@settings(max_examples=40, deadline=None)
@given(truthful_case(), st.randoms(use_true_random=False))
def test_order_of_answers_does_not_change_what_is_known(case, random):
    n, _, answers = case
    shuffled = list(answers)
    random.shuffle(shuffled)
    first, _ = graph_from(n, answers)
    second, _ = graph_from(n, shuffled)
    assert np.array_equal(relation_matrix(first), relation_matrix(second))
    assert np.array_equal(first.component_ids(), second.component_ids())
    assert np.array_equal(first.cannot_link_edges(), second.cannot_link_edges())
    assert first.pairs_known() == second.pairs_known()


@settings(max_examples=60, deadline=None)
@given(arbitrary_case(), st.booleans())
def test_pairs_known_equals_brute_force_count(case, propagation):
    n, answers = case
    graph = ConstraintGraph(n, propagation=propagation)
    for a, b, same in answers:
        graph.add_answer(a, b, same)
        count = sum(graph.known(x, y) for x, y in itertools.combinations(range(n), 2))
        assert graph.pairs_known() == count
    if propagation:
        assert graph.pairs_known() == int(np.triu(reference_relation(n, answers) != 0, k=1).sum())


@settings(max_examples=60, deadline=None)
@given(arbitrary_case())
def test_components_members_and_cannot_link_edges(case):
    n, answers = case
    graph, _ = graph_from(n, answers)
    rel = reference_relation(n, answers)
    ids = graph.component_ids()
    assert ids.dtype == np.int64 and ids.shape == (n,)
    for i in range(n):
        same = [j for j in range(n) if rel[i, j] == 1]
        assert graph.members(i) == same
        assert ids[i] == min(same)
    edges = graph.cannot_link_edges()
    assert edges.dtype == np.int64 and edges.shape[1] == 2
    expected = sorted(
        {(int(ids[a]), int(ids[b])) for a in range(n) for b in range(n) if rel[a, b] == -1 and ids[a] < ids[b]}
    )
    assert [tuple(e) for e in edges.tolist()] == expected
    assert graph.has_constraints() == (len(graph.answers()) > 0)


@settings(max_examples=40, deadline=None)
@given(arbitrary_case(), st.booleans())
def test_state_dict_round_trip(case, propagation):
    n, answers = case
    graph, _ = graph_from(n, answers, propagation=propagation)
    state = json.loads(json.dumps(graph.state_dict()))
    copy = ConstraintGraph.from_state_dict(state)
    assert copy.propagation == propagation
    assert np.array_equal(relation_matrix(copy), relation_matrix(graph))
    assert np.array_equal(copy.component_ids(), graph.component_ids())
    assert np.array_equal(copy.cannot_link_edges(), graph.cannot_link_edges())
    assert copy.pairs_known() == graph.pairs_known()
    assert copy.answers() == graph.answers()
    assert copy.contradictions == graph.contradictions
    assert (copy.num_must_links_answered, copy.num_cannot_links_answered) == (
        graph.num_must_links_answered,
        graph.num_cannot_links_answered,
    )


def test_transitivity_of_must_link_and_propagation_of_cannot_link():
    graph = ConstraintGraph(6)
    assert graph.add_must_link(0, 1) and graph.add_must_link(1, 2)
    assert graph.relation(0, 2) == 1 and graph.relation(2, 0) == 1
    assert graph.add_cannot_link(2, 3)
    assert graph.relation(0, 3) == -1 and graph.relation(3, 1) == -1
    assert graph.add_must_link(3, 4)
    assert graph.relation(4, 0) == -1  # CL then ML on the other side
    assert graph.relation(0, 5) == 0 and not graph.known(0, 5)
    assert graph.pairs_known() == 3 + 1 + 3 * 2  # {0,1,2} + {3,4} + CL between them
    assert len(graph.answers()) == 4 and graph.num_must_links_answered == 3 and graph.num_cannot_links_answered == 1


def test_contradictions_are_refused_logged_and_kept_out(caplog):
    graph = ConstraintGraph(4)
    graph.add_must_link(0, 1)
    graph.add_cannot_link(1, 2)
    with caplog.at_level("WARNING"):
        assert not graph.add_must_link(0, 2)
        assert not graph.add_cannot_link(1, 0)
        assert not graph.add_cannot_link(3, 3)
    assert graph.contradictions == [(0, 2, True), (1, 0, False), (3, 3, False)]
    assert "contradictory answer" in caplog.text
    assert graph.answers() == [(0, 1, True), (1, 2, False)]
    assert graph.add_must_link(3, 3) and graph.answers() == [(0, 1, True), (1, 2, False)]


def test_without_propagation_only_answered_pairs_are_known_but_structure_is_kept():
    graph = ConstraintGraph(5, propagation=False)
    graph.add_must_link(0, 1)
    graph.add_must_link(1, 2)
    graph.add_cannot_link(2, 3)
    assert graph.relation(1, 0) == 1 and graph.relation(0, 2) == 0 and graph.relation(0, 3) == 0
    assert graph.relation(3, 2) == -1 and graph.pairs_known() == 3
    assert graph.component_ids().tolist() == [0, 0, 0, 3, 4]
    assert graph.cannot_link_edges().tolist() == [[0, 3]]
    # Contradictions are still judged on the propagated structure the clustering and the loss read.
    assert not graph.add_must_link(0, 3)
    assert graph.relation(0, 3) == 0


def test_bad_indices_and_sizes_raise():
    graph = ConstraintGraph(3)
    with pytest.raises(IndexError, match="out of range"):
        graph.add_must_link(0, 3)
    with pytest.raises(IndexError):
        graph.relation(-1, 0)
    with pytest.raises(ValueError):
        ConstraintGraph(-1)
    with pytest.raises(ValueError, match="version"):
        ConstraintGraph.from_state_dict({"version": 99})
    assert ConstraintGraph(0).component_ids().shape == (0,)
    assert ConstraintGraph(0).cannot_link_edges().shape == (0, 2)


def test_two_n_answers_at_scale_stay_fast():
    """About 2n truthful answers on 20,000 points, with the whole-graph readers called every epoch."""
    n = 20_000
    rng = np.random.default_rng(0)
    pids = rng.integers(0, 700, size=n)
    by_id = {pid: np.flatnonzero(pids == pid) for pid in np.unique(pids)}
    graph = ConstraintGraph(n)
    start = time.perf_counter()
    for step, (a, b) in enumerate(rng.integers(0, n, size=(2 * n, 2))):
        # Half the questions pair images of one identity, as DUS positives mostly do.
        if step % 2:
            b = by_id[pids[a]][step % len(by_id[pids[a]])]
        graph.add_answer(int(a), int(b), bool(pids[a] == pids[b]))
        graph.relation(int(b), int(a))
        if step % 4000 == 0:
            graph.pairs_known()
            graph.component_ids()
    graph.cannot_link_edges()
    assert time.perf_counter() - start < 20.0
    assert graph.contradictions == []
