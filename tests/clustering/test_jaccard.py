"""jaccard_distance against a dense, literal transcription of SPEC 3.1 (loops over i, n x n arrays)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spal.clustering import jaccard_distance
from spal.clustering.jaccard import (
    encode_neighbourhoods,
    half_list_length,
    pairwise_min_sums,
    query_expansion,
    ranked_neighbours,
)


def dense_reference(features: np.ndarray, k1: int, k2: int) -> tuple[np.ndarray, int]:
    """SPEC 3.1 word for word, dense and in float64.

    Returns:
        ``(D, expansions)``: the ``(n, n)`` distance matrix and how many accepted candidates added at least
        one point to R(i) (so that a test can check that the expansion rule was exercised).
    """
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    sim = x @ x.T
    dist = 2.0 - 2.0 * sim
    k = min(k1, n)
    half = min(int(np.around(k1 / 2)) + 1, k)
    # Ranked lists: self first, then by distance, ties to the lower index.
    rank = np.empty((n, n), dtype=np.int64)
    for i in range(n):
        others = np.lexsort((np.arange(n), dist[i]))
        rank[i] = np.concatenate(([i], others[others != i]))
    top = [set(rank[i, :k].tolist()) for i in range(n)]
    top_half = [set(rank[i, :half].tolist()) for i in range(n)]
    recip = [{j for j in rank[i, :k].tolist() if i in top[j]} for i in range(n)]
    recip_half = [{j for j in rank[i, :half].tolist() if i in top_half[j]} for i in range(n)]
    V = np.zeros((n, n))
    expansions = 0
    for i in range(n):
        expanded = set(recip[i])
        for c in recip[i]:
            if len(recip_half[c] & recip[i]) > 2 / 3 * len(recip_half[c]):
                expansions += bool(recip_half[c] - recip[i])
                expanded |= recip_half[c]
        members = np.array(sorted(expanded))
        logits = -(2.0 - 2.0 * sim[i, members])
        weights = np.exp(logits - logits.max())
        V[i, members] = weights / weights.sum()
    if k2 != 1:
        V = np.stack([V[rank[i, : min(k2, k)]].mean(axis=0) for i in range(n)])
    D = np.ones((n, n))
    columns = V.T.copy()  # columns[k] = V[:, k], contiguous
    for i in range(n):
        support = np.flatnonzero(V[i])  # min(V[i, k], .) is 0 off the support
        s = np.minimum(V[i, support][:, None], columns[support]).sum(axis=0)
        D[i] = np.maximum(1.0 - s / (2.0 - s), 0.0)
    return D, expansions


def as_dense(distances: sp.csr_matrix) -> np.ndarray:
    """Absent entries are distance 1."""
    out = np.ones(distances.shape)
    coo = distances.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


def clustered(n: int, d: int, num_ids: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids, d))
    x = centres[rng.integers(0, num_ids, n)] + noise * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def check_against_reference(x: np.ndarray, k1: int, k2: int) -> int:
    ours = jaccard_distance(x, k1=k1, k2=k2)
    ref, expansions = dense_reference(x, k1, k2)
    np.testing.assert_allclose(as_dense(ours), ref, atol=1e-5, rtol=0)
    # Stored exactly where d < 1 (up to float32 rounding of a vanishing overlap).
    stored = np.zeros(ours.shape, dtype=bool)
    coo = ours.tocoo()
    stored[coo.row, coo.col] = True
    assert np.all(ref[stored] < 1.0)
    assert np.all(stored[ref < 1.0 - 1e-6])
    return expansions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_on_clustered_data_with_expansions(seed: int) -> None:
    x = clustered(n=240, d=24, num_ids=12, noise=0.9, seed=seed)
    assert check_against_reference(x, k1=30, k2=6) > 0


@pytest.mark.parametrize("k1,k2", [(20, 1), (7, 3), (30, 40), (1, 6), (2, 1)])
def test_matches_reference_for_other_k(k1: int, k2: int) -> None:
    check_against_reference(clustered(n=150, d=16, num_ids=8, noise=0.8, seed=k1 + k2), k1, k2)


@pytest.mark.parametrize("n,k1", [(12, 11), (12, 12), (9, 30), (2, 30), (1, 30)])
def test_matches_reference_for_tiny_n(n: int, k1: int) -> None:
    rng = np.random.default_rng(n * 100 + k1)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    check_against_reference(x / np.linalg.norm(x, axis=1, keepdims=True), k1, k2=6)


def test_matches_reference_on_unclustered_data() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    check_against_reference(x / np.linalg.norm(x, axis=1, keepdims=True), k1=30, k2=6)


def test_matches_reference_at_two_thousand_points() -> None:
    x = clustered(n=2000, d=32, num_ids=70, noise=0.7, seed=11)
    assert check_against_reference(x, k1=30, k2=6) > 0


def test_output_format() -> None:
    x = clustered(n=200, d=16, num_ids=10, noise=0.8, seed=3)
    d = jaccard_distance(torch.from_numpy(x))
    assert isinstance(d, sp.csr_matrix) and d.dtype == np.float32 and d.shape == (200, 200)
    assert d.has_canonical_format
    assert np.array_equal(d.diagonal(), np.zeros(200)) and d.nnz > 200
    assert abs(d - d.T).max() < 1e-6
    assert np.all((d.data >= 0) & (d.data < 1))
    assert (jaccard_distance(x) != d).nnz == 0


def test_half_list_length_uses_numpy_rounding() -> None:
    assert [half_list_length(k) for k in (1, 2, 3, 5, 30)] == [1, 2, 3, 3, 16]


def test_self_comes_first_even_with_duplicates() -> None:
    x = np.repeat(np.eye(4, dtype=np.float32), 3, axis=0)  # 12 points, each feature 3 times
    _, idx = ranked_neighbours(x, 4)
    assert np.array_equal(idx[:, 0], np.arange(12))
    assert all(set(idx[i, 1:3]) == {j for j in range(3 * (i // 3), 3 * (i // 3) + 3) if j != i} for i in range(12))


def test_bad_arguments_are_refused() -> None:
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="k1"):
        jaccard_distance(x, k1=0)
    with pytest.raises(ValueError, match="2-D"):
        jaccard_distance(x[0])
    with pytest.raises(ValueError, match="L2-normalised"):
        jaccard_distance(2 * x)


def test_inner_products_beyond_the_table_are_computed() -> None:
    # With a table of exactly k1 columns every expanded member beyond the k1-th neighbour needs its own dot
    # product; with a wide table most are read from it. Both must give the same weights.
    x = clustered(n=400, d=16, num_ids=10, noise=0.9, seed=4)
    sims, idx = ranked_neighbours(x, 120)
    wide = encode_neighbourhoods(sims, idx, x, 30)
    narrow = encode_neighbourhoods(sims[:, :30], idx[:, :30], x, 30)
    beyond = sp.csr_matrix((np.ones(400 * 30), idx[:, :30].ravel(), np.arange(0, 400 * 30 + 1, 30)))
    assert (wide.astype(bool) > beyond.astype(bool)).nnz > 0  # some expanded member lies beyond the list
    assert np.array_equal(wide.indices, narrow.indices) and np.array_equal(wide.indptr, narrow.indptr)
    np.testing.assert_allclose(wide.data, narrow.data, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(wide.sum(axis=1)).ravel(), 1.0, rtol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_features_give_the_cpu_result() -> None:
    x = clustered(n=1500, d=64, num_ids=50, noise=0.8, seed=8)
    on_gpu = jaccard_distance(torch.from_numpy(x).cuda())
    on_cpu = jaccard_distance(x)
    np.testing.assert_allclose(as_dense(on_gpu), as_dense(on_cpu), atol=1e-5, rtol=0)


def test_torch_pair_sums_equal_the_scipy_ones() -> None:
    # The device path (used for CUDA features) run on the CPU: same pairs, same sums.
    x = clustered(n=500, d=16, num_ids=15, noise=0.9, seed=6)
    sims, idx = ranked_neighbours(x, 120)
    weights = query_expansion(encode_neighbourhoods(sims, idx, x, 30), idx[:, :30], 6)
    on_scipy = pairwise_min_sums(weights)
    on_torch = pairwise_min_sums(weights, device="cpu")
    assert on_scipy.nnz > 500
    assert np.array_equal(on_scipy.indptr, on_torch.indptr) and np.array_equal(on_scipy.indices, on_torch.indices)
    np.testing.assert_allclose(on_scipy.data, on_torch.data, rtol=1e-12)
    assert np.all(on_scipy.indices > np.repeat(np.arange(500), np.diff(on_scipy.indptr)))  # strictly upper
