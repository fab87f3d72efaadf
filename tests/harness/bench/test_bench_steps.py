"""pytest-benchmark timings of each label-phase step and of the evaluation at a mid size (n = 4,000).

In ``make test`` these run once each as plain tests (``--benchmark-disable`` in pyproject.toml) and check their
results; ``make bench`` runs them with timing enabled and writes ``results/bench/pytest-benchmark-<device>.json``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spal.active import Budget, ConstraintGraph, GroundTruthOracle, select_support_pairs
from spal.clustering import constrained_dbscan, jaccard_distance, knn_search, neighbour_table
from spal.evaluation import evaluate

N, DIM, IDS = 4000, 256, 200


@pytest.fixture(scope="module")
def population() -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(IDS), N // IDS)
    centres = rng.normal(size=(IDS, DIM))
    points = centres[pids] + 0.7 * rng.normal(size=(N, DIM))
    return torch.nn.functional.normalize(torch.as_tensor(points, dtype=torch.float32), dim=1), pids


@pytest.fixture(scope="module")
def table(population):
    return neighbour_table(population[0], k1=30)


@pytest.fixture(scope="module")
def distances(population, table):
    return jaccard_distance(population[0], 30, 6, neighbours=table)


def test_bench_knn(benchmark, population) -> None:
    sims, idx = benchmark(knn_search, population[0], 30)
    assert idx.shape == (N, 30) and (idx[:, 0] == np.arange(N)).all()


def test_bench_jaccard(benchmark, population, table) -> None:
    result = benchmark(jaccard_distance, population[0], 30, 6, neighbours=table)
    assert result.shape == (N, N) and result.diagonal().max() == 0


def test_bench_constrained_dbscan(benchmark, distances, population) -> None:
    pids = population[1]
    graph = ConstraintGraph(N)
    for a in range(0, N - 1, 2):
        graph.add_answer(a, a + 1, bool(pids[a] == pids[a + 1]))
    labels = benchmark(constrained_dbscan, distances, 0.6, 4, graph)
    assert labels.shape == (N,) and labels.max() >= 0


def test_bench_selection(benchmark, distances, population, table) -> None:
    features, pids = population
    labels = constrained_dbscan(distances, 0.6, 4)

    def select() -> list:
        return select_support_pairs(
            labels, features, ConstraintGraph(N), Budget(2 * N), GroundTruthOracle(pids), neighbours=table
        )

    asked = benchmark(select)
    assert 0 < len(asked) <= 2 * (labels.max() + 1)


def test_bench_evaluate(benchmark, population) -> None:
    features, pids = population
    cams = np.arange(N) % 6
    query = np.arange(0, N, 8)
    gallery = np.setdiff1d(np.arange(N), query)
    result = benchmark(
        evaluate, features[query], features[gallery], pids[query], pids[gallery], cams[query], cams[gallery]
    )
    assert 0 < result["mAP"] <= 1 and result["num_valid_queries"] == len(query)
