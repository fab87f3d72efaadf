"""knn_search: exact, ties to the lower index, and the torch path equal to faiss."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from spal.clustering import knn_search
from spal.clustering.knn import torch_knn


def normalised(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_matches_brute_force() -> None:
    x = normalised(300, 12, 0)
    sims, idx = knn_search(x, 10)
    full = x.astype(np.float64) @ x.T.astype(np.float64)
    expected = np.argsort(-full, axis=1, kind="stable")[:, :10]
    assert np.array_equal(idx, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(full, expected, axis=1), atol=1e-6)
    assert sims.dtype == np.float32 and idx.dtype == np.int64


def test_ties_go_to_the_lower_index() -> None:
    x = np.repeat(np.eye(3, dtype=np.float32), [4, 1, 1], axis=0)  # points 0..3 identical
    _, idx = knn_search(x, 4, queries=x[3:4])
    assert idx.tolist() == [[0, 1, 2, 3]]


def test_torch_path_equals_faiss() -> None:
    pytest.importorskip("faiss", reason="compares the torch search with faiss's")
    x = normalised(500, 16, 1)
    q = normalised(40, 16, 2)
    for queries in (None, q):
        faiss_sims, faiss_idx = knn_search(x, 25, queries)
        torch_sims, torch_idx = torch_knn(torch.from_numpy(x), 25, None if queries is None else torch.from_numpy(q))
        assert np.array_equal(faiss_idx, torch_idx)
        np.testing.assert_allclose(faiss_sims, torch_sims, atol=1e-6)


def test_k_is_clipped_to_n_and_empty_inputs_work() -> None:
    x = normalised(5, 4, 3)
    assert knn_search(x, 50)[1].shape == (5, 5)
    assert knn_search(x, 3, queries=x[:0])[1].shape == (0, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_are_searched_exactly() -> None:
    x = normalised(3000, 64, 4)
    matmul = torch.backends.cuda.matmul
    previous = matmul.fp32_precision
    matmul.fp32_precision = "tf32"  # a trainer may leave TF32 on; the search must stay exact
    try:
        cuda_sims, cuda_idx = knn_search(torch.from_numpy(x).cuda(), 30)
    finally:
        matmul.fp32_precision = previous
    cpu_sims, cpu_idx = knn_search(x, 30)
    assert (cuda_idx == cpu_idx).mean() > 0.999  # float32 rounding may swap near-ties
    np.testing.assert_allclose(cuda_sims, cpu_sims, atol=1e-5)


def test_without_faiss_the_torch_search_gives_the_same_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("faiss", reason="compares the fallback with faiss's search")
    x = normalised(400, 16, 5)
    x[7] = x[3]  # an exact tie, which both paths give to the lower index
    q = normalised(30, 16, 6)
    with_faiss = [knn_search(x, 20), knn_search(x, 20, queries=q), knn_search(torch.from_numpy(x), 20)]
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    without = [knn_search(x, 20), knn_search(x, 20, queries=q), knn_search(torch.from_numpy(x), 20)]
    for (sims_f, idx_f), (sims_t, idx_t) in zip(with_faiss, without):
        assert np.array_equal(idx_f, idx_t)
        np.testing.assert_allclose(sims_f, sims_t, atol=1e-6)
        assert sims_t.dtype == np.float32 and idx_t.dtype == np.int64
    assert without[0][1][3, :2].tolist() == [3, 7]
