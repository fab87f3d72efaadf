"""cluster_statistics against brute-force pair counting and sklearn's NMI."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from spal.clustering import cluster_statistics


def test_hand_example() -> None:
    labels = np.array([0, 0, 0, 1, 1, -1, -1])
    pids = np.array([5, 5, 7, 7, 7, 5, 9])
    stats = cluster_statistics(labels, pids)
    assert stats["num_clusters"] == 2 and stats["num_outliers"] == 2 and stats["num_ids"] == 3
    assert stats["purity"] == pytest.approx(4 / 5)
    # predicted pairs: 3 + 1 = 4, of which (0,1) and (3,4) are true; true pairs: C(3,2) + C(3,2) = 6.
    assert stats["pairwise_precision"] == pytest.approx(2 / 4)
    assert stats["pairwise_recall"] == pytest.approx(2 / 6)
    assert stats["pairwise_f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))


@pytest.mark.parametrize("seed", range(10))
def test_random_cases_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    labels = rng.integers(-1, 6, n)
    pids = rng.integers(100, 106, n)
    stats = cluster_statistics(labels, pids)
    same_cluster = [labels[a] >= 0 and labels[a] == labels[b] for a, b in itertools.combinations(range(n), 2)]
    same_pid = [pids[a] == pids[b] for a, b in itertools.combinations(range(n), 2)]
    true_positive = sum(c and p for c, p in zip(same_cluster, same_pid))
    assert stats["pairwise_precision"] == pytest.approx(true_positive / sum(same_cluster) if any(same_cluster) else 0)
    assert stats["pairwise_recall"] == pytest.approx(true_positive / sum(same_pid) if any(same_pid) else 0)
    singletons = np.where(labels < 0, 1000 + np.arange(n), labels)
    assert stats["nmi"] == pytest.approx(normalized_mutual_info_score(pids, singletons))
    clustered = labels >= 0
    majority = sum(np.bincount(pids[labels == c] - 100).max() for c in np.unique(labels[clustered]))
    assert stats["purity"] == pytest.approx(majority / clustered.sum() if clustered.any() else 0)


def test_perfect_clustering_scores_one() -> None:
    pids = np.array([3, 3, 8, 8, 8, 1])
    stats = cluster_statistics(np.array([1, 1, 0, 0, 0, 2]), pids)
    assert stats["purity"] == stats["pairwise_f1"] == 1.0
    assert stats["nmi"] == pytest.approx(1.0)


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="one length"):
        cluster_statistics(np.zeros(3), np.zeros(4))
