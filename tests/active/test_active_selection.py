"""Dual uncertainty selection (SPEC 3.3) against a dense brute-force reference, and its ablations."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spal.active import Budget, ConstraintGraph, GroundTruthOracle, plan_support_pairs, select_support_pairs


def reference_plan(labels: np.ndarray, features: np.ndarray) -> list[tuple[int, int, str]]:
    """SPEC 3.3 by loops over a dense float64 distance matrix; strict comparisons keep the first tied pair."""
    f = features.astype(np.float64)
    n = len(labels)
    dist = ((f[:, None, :] - f[None, :, :]) ** 2).sum(axis=-1).tolist()
    plan = []
    for c in sorted(set(labels.tolist()) - {-1}):
        inside = [i for i in range(n) if labels[i] == c]
        outside = [i for i in range(n) if labels[i] != c]
        best = None
        for a in inside:
            for b in inside:
                if best is None or dist[a][b] > best[0]:
                    best = (dist[a][b], a, b)
        if best[1] != best[2]:
            plan.append((best[1], best[2], "positive"))
        best = None
        for a in inside:
            for b in outside:
                if best is None or dist[a][b] < best[0]:
                    best = (dist[a][b], a, b)
        if best is not None:
            plan.append((best[1], best[2], "negative"))
    return plan


def reference_select(plan, n, answers_before, budget, truth):
    """Asks plan pairs in order with a brute-force 'known' (closure over all answers so far)."""
    answers = list(answers_before)
    asked = []
    for a, b, _ in plan:
        if budget == 0:
            break
        if a == b or reference_known(n, answers, a, b):
            continue
        same = bool(truth[a] == truth[b])
        answers.append((a, b, same))
        asked.append((a, b, same))
        budget -= 1
    return asked


def reference_known(n, answers, x, y) -> bool:
    comp = list(range(n))
    for a, b, same in answers:
        if same:
            old, new = comp[b], comp[a]
            comp = [new if c == old else c for c in comp]
    if comp[x] == comp[y]:
        return True
    return any(not same and {comp[a], comp[b]} == {comp[x], comp[y]} for a, b, same in answers)


class SpyOracle:
    def __init__(self, pids):
        self.inner = GroundTruthOracle(pids)
        self.calls: list[tuple[int, int]] = []

    def __call__(self, a, b):
        self.calls.append((a, b))
        return self.inner(a, b)


@st.composite
def clustering_case(draw):
    n = draw(st.integers(1, 24))
    d = draw(st.integers(1, 4))
    labels = np.array(draw(st.lists(st.integers(-1, 4), min_size=n, max_size=n)), dtype=np.int64)
    if draw(st.booleans()):
        # Small integers: many exact ties, identical points, zero distances.
        values = st.integers(-2, 2).map(float)
    else:
        values = st.floats(-3, 3, allow_nan=False, width=32)
    features = np.array(draw(st.lists(values, min_size=n * d, max_size=n * d)), dtype=np.float32).reshape(n, d)
    pids = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    return labels, features, pids


@settings(max_examples=120, deadline=None)
@given(clustering_case(), st.sampled_from([1, 2, 64]))
def test_plan_matches_brute_force(case, k):
    labels, features, _ = case
    assert plan_support_pairs(labels, features, k=k) == reference_plan(labels, features)


@settings(max_examples=80, deadline=None)
@given(clustering_case(), st.integers(0, 12), st.integers(0, 6))
def test_select_matches_reference_and_respects_the_budget(case, total, num_prior):
    labels, features, pids = case
    n = len(labels)
    rng = np.random.default_rng(num_prior)
    graph = ConstraintGraph(n)
    prior = [(int(a), int(b), bool(pids[a] == pids[b])) for a, b in rng.integers(0, n, size=(num_prior, 2))]
    for a, b, same in prior:
        graph.add_answer(a, b, same)
    oracle = SpyOracle(pids)
    budget = Budget(total)
    asked = select_support_pairs(labels, features, graph, budget, oracle)
    expected = reference_select(reference_plan(labels, features), n, prior, total, pids)
    assert asked == expected
    assert oracle.calls == [(a, b) for a, b, _ in asked]  # once per pair, in order and orientation
    assert budget.remaining == total - len(asked) >= 0
    assert all(a != b for a, b, _ in asked)
    assert all(graph.relation(a, b) == (1 if same else -1) for a, b, same in asked)


def test_trivial_and_known_pairs_cost_nothing():
    # Clusters {0}, {1, 2}; 3 is an outlier. Size-1 cluster 0: positive (0, 0) is trivial.
    features = np.array([[0.0], [1.0], [3.0], [0.5]], dtype=np.float32)
    labels = np.array([0, 1, 1, -1])
    pids = np.array([0, 1, 1, 0])
    assert plan_support_pairs(labels, features) == [
        (0, 3, "negative"),
        (1, 2, "positive"),
        (1, 3, "negative"),
    ]
    graph = ConstraintGraph(4)
    graph.add_must_link(0, 3)
    graph.add_cannot_link(3, 1)
    budget = SimpleNamespace(remaining=10)
    oracle = SpyOracle(pids)
    assert select_support_pairs(labels, features, graph, budget, oracle) == [(1, 2, True)]
    assert budget.remaining == 9 and oracle.calls == [(1, 2)]


def test_known_is_decided_when_the_pair_comes_up():
    # Cluster 0 = {0, 1}, cluster 1 = {2, 3}; the negatives of both clusters are the same pair {1, 2}.
    features = np.array([[0.0], [1.0], [1.5], [3.0]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    plan = plan_support_pairs(labels, features)
    assert plan == [(0, 1, "positive"), (1, 2, "negative"), (2, 3, "positive"), (2, 1, "negative")]
    oracle = SpyOracle(np.array([0, 0, 1, 1]))
    budget = Budget(10)
    asked = select_support_pairs(labels, features, ConstraintGraph(4), budget, oracle)
    assert asked == [(0, 1, True), (1, 2, False), (2, 3, True)]
    assert budget.spent == 3


def test_budget_stops_questions_and_zero_budget_asks_nothing():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 3)).astype(np.float32)
    labels = np.repeat(np.arange(8), 5)
    pids = np.repeat(np.arange(8), 5)
    budget = Budget(5)
    oracle = SpyOracle(pids)
    asked = select_support_pairs(labels, features, ConstraintGraph(40), budget, oracle)
    assert len(asked) == 5 and budget.remaining == 0 and len(oracle.calls) == 5
    assert select_support_pairs(labels, features, ConstraintGraph(40), Budget(0), oracle) == []
    assert len(oracle.calls) == 5


def test_cluster_holding_every_point_has_only_a_positive():
    features = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert plan_support_pairs(np.zeros(3, dtype=np.int64), features) == [(1, 2, "positive")]
    assert plan_support_pairs(np.zeros(1, dtype=np.int64), features[:1]) == []
    assert plan_support_pairs(np.full(3, -1), features) == []


def test_fallback_search_finds_the_nearest_outside_point_of_a_large_tight_cluster():
    # 300 points of one tight cluster around the origin and 20 far points; k = 4 forces several re-searches.
    rng = np.random.default_rng(1)
    features = np.concatenate([rng.normal(0, 0.1, size=(300, 6)), rng.normal(3, 1, size=(20, 6))])
    features = features.astype(np.float32)
    labels = np.concatenate([np.zeros(300, dtype=np.int64), np.full(20, -1)])
    labels[300:305] = 1
    expected = reference_plan(labels, features)
    assert plan_support_pairs(labels, features, k=4) == expected
    assert plan_support_pairs(torch.from_numpy(labels), features, k=4) == expected
    assert plan_support_pairs(labels, torch.from_numpy(features), k=4) == expected


def test_strategies_positive_only_and_negative_only():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(30, 4)).astype(np.float32)
    labels = np.repeat(np.arange(5), 6)
    pids = rng.integers(0, 4, size=30)
    plan = plan_support_pairs(labels, features)
    for strategy, kind in (("positive-only", "positive"), ("negative-only", "negative")):
        oracle = SpyOracle(pids)
        kinds: list[str] = []
        asked = select_support_pairs(
            labels,
            features,
            ConstraintGraph(30),
            Budget(100),
            oracle,
            strategy=strategy,
            on_pair=lambda a, b, k, seen=kinds: seen.append(k),
        )
        only = [p for p in plan if p[2] == kind]
        assert asked == reference_select(only, 30, [], 100, pids)
        assert kinds == [kind] * len(asked) and len(asked) > 0


def test_random_strategy_spends_what_dus_would_on_unknown_pairs():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(60, 4)).astype(np.float32)
    labels = np.repeat(np.arange(10), 6)
    labels[::7] = -1
    pids = rng.integers(0, 6, size=60)
    dus = select_support_pairs(labels, features, ConstraintGraph(60), Budget(1000), SpyOracle(pids))

    def run(seed):
        graph = ConstraintGraph(60)
        kinds: list[str] = []
        before: list[bool] = []

        def on_pair(a, b, kind):
            kinds.append(kind)
            before.append(graph.known(a, b))

        oracle = SpyOracle(pids)
        budget = Budget(1000)
        asked = select_support_pairs(
            labels,
            features,
            graph,
            budget,
            oracle,
            strategy="random",
            rng=np.random.default_rng(seed),
            on_pair=on_pair,
        )
        assert oracle.calls == [(a, b) for a, b, _ in asked] and budget.spent == len(asked)
        assert kinds == ["random"] * len(asked) and not any(before)
        inside = [labels[a] == labels[b] for a, b, _ in asked]
        assert inside == [i % 2 == 0 for i in range(len(asked))]  # alternately inside a cluster and across
        assert all(labels[a] >= 0 for a, _, _ in asked)
        return asked

    first = run(0)
    assert len(first) == len(dus)
    assert first != dus
    assert run(0) == first
    assert run(1) != first
    small = Budget(3)
    select_support_pairs(
        labels,
        features,
        ConstraintGraph(60),
        small,
        SpyOracle(pids),
        strategy="random",
        rng=np.random.default_rng(0),
    )
    assert small.remaining == 0


def test_bad_arguments_are_refused_with_a_hint():
    features = np.zeros((3, 2), dtype=np.float32)
    graph = ConstraintGraph(3)
    oracle = SpyOracle(np.zeros(3))
    with pytest.raises(ValueError, match="choose one of"):
        select_support_pairs([0, 0, 1], features, graph, Budget(1), oracle, strategy="greedy")
    with pytest.raises(ValueError, match="default_rng"):
        select_support_pairs([0, 0, 1], features, graph, Budget(1), oracle, strategy="random")
    with pytest.raises(ValueError, match="n=3"):
        select_support_pairs([0, 0], features[:2], graph, Budget(1), oracle)
    with pytest.raises(ValueError, match="features"):
        plan_support_pairs([0, 0, 1], features[:2])
    with pytest.raises(ValueError, match="-1"):
        plan_support_pairs([0, -2, 1], features)
    with pytest.raises(ValueError, match="kinds"):
        plan_support_pairs([0, 0, 1], features, kinds=("sideways",))
    assert oracle.calls == []


def test_shared_neighbour_table_gives_the_same_pairs() -> None:
    """Reusing the Jaccard step's k-NN table changes the work, never the pairs (fallback searches included)."""
    from spal.clustering import neighbour_table

    rng = np.random.default_rng(4)
    centres = rng.normal(size=(12, 16))
    points = np.repeat(centres, 30, axis=0) + 0.3 * rng.normal(size=(360, 16))
    features = torch.nn.functional.normalize(torch.as_tensor(points, dtype=torch.float32), dim=1)
    labels = np.repeat(np.arange(12), 30)
    labels[rng.choice(360, 40, replace=False)] = -1
    # A table narrower than a cluster forces the exact fallback search for some members.
    table = neighbour_table(features, k1=5)
    assert table[1].shape[1] < 30
    assert plan_support_pairs(labels, features, neighbours=table) == plan_support_pairs(labels, features)
    with pytest.raises(ValueError, match="normalised"):
        plan_support_pairs(labels, features * 2, neighbours=table)
