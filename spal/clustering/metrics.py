"""Quality of pseudo labels against ground-truth identities, for the per-epoch log (pure, vectorised)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["cluster_statistics"]


def _pairs(counts: np.ndarray) -> float:
    """Number of unordered pairs inside groups of the given sizes."""
    counts = np.asarray(counts, dtype=np.float64)
    return float((counts * (counts - 1) / 2).sum())


def cluster_statistics(labels: np.ndarray, pids: np.ndarray) -> dict[str, float | int]:
    """Summarise a clustering against the true identities.

    Outliers (label ``-1``) count as singletons, as they train: they form no predicted pair and join no
    cluster in purity, but their true pairs count in the recall.

    Args:
        labels: ``(n,)`` int cluster ids, ``-1`` for outliers.
        pids: ``(n,)`` int ground-truth identities (any integer values).

    Returns:
        ``num_clusters``, ``num_outliers``, ``num_ids`` (distinct pids); ``purity``: share of clustered points
        whose pid is their cluster's majority pid; ``pairwise_precision`` / ``pairwise_recall`` /
        ``pairwise_f1``: over unordered pairs, "same cluster" against "same pid"; ``nmi``: normalised mutual
        information (arithmetic mean of the entropies) with outliers as singletons. A ratio whose
        denominator is 0 is reported as 0.0 (NMI: 1.0 when both partitions are trivial and equal).
    """
    labels = np.asarray(labels, dtype=np.int64)
    pids = np.asarray(pids)
    if labels.ndim != 1 or labels.shape != pids.shape:
        raise ValueError(
            f"labels and pids must be 1-D arrays of one length, got shapes {labels.shape} and {pids.shape}"
        )
    n = labels.size
    outlier = labels < 0
    # Outliers become singletons with fresh ids after the real clusters.
    _, cluster = np.unique(labels, return_inverse=True)
    cluster = cluster.reshape(-1)
    num_real = int(np.unique(labels[~outlier]).size)
    if outlier.any():
        cluster = cluster - int(outlier.any())
        cluster[outlier] = num_real + np.arange(int(outlier.sum()))
    _, identity = np.unique(pids, return_inverse=True)
    identity = identity.reshape(-1)
    num_clusters_all = num_real + int(outlier.sum())
    num_ids = int(identity.max()) + 1 if n else 0
    table = sp.coo_matrix((np.ones(n), (cluster, identity)), shape=(num_clusters_all, num_ids)).tocsr()
    table.sum_duplicates()
    cluster_sizes = np.asarray(table.sum(axis=1)).ravel()
    id_sizes = np.asarray(table.sum(axis=0)).ravel()
    clustered = table[:num_real]
    majority = clustered.max(axis=1).toarray().ravel() if num_real else np.zeros(0)
    num_clustered = n - int(outlier.sum())
    true_positive = _pairs(table.data)
    predicted, actual = _pairs(cluster_sizes), _pairs(id_sizes)
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "num_clusters": num_real,
        "num_outliers": int(outlier.sum()),
        "num_ids": num_ids,
        "purity": float(majority.sum() / num_clustered) if num_clustered else 0.0,
        "pairwise_precision": precision,
        "pairwise_recall": recall,
        "pairwise_f1": f1,
        "nmi": _nmi(table.data, cluster_sizes, id_sizes, n),
    }


def _entropy(counts: np.ndarray, n: int) -> float:
    p = counts[counts > 0] / n
    return float(-(p * np.log(p)).sum())


def _nmi(joint: np.ndarray, rows: np.ndarray, cols: np.ndarray, n: int) -> float:
    """NMI from the non-zero contingency counts and the two marginals."""
    if n == 0:
        return 0.0
    h_rows, h_cols = _entropy(rows, n), _entropy(cols, n)
    if h_rows == 0.0 and h_cols == 0.0:
        return 1.0
    mutual = h_rows + h_cols - _entropy(joint, n)
    return float(max(mutual, 0.0) / ((h_rows + h_cols) / 2))
