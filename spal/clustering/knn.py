"""Exact k-nearest-neighbour search by inner product, behind one small function.

CPU features go to a faiss ``IndexFlatIP``. Features on a CUDA device stay there: a faiss GPU index when
faiss was built with GPU support, otherwise blocks of ``queries @ database.T`` and ``topk`` in torch. faiss is
optional (a stock GPU image has no faiss): without it every search takes the torch path, on the features'
device, with the same results as faiss's exact search up to the order of equal similarities, which the
re-sorting below fixes anyway. The
torch products are taken in float64: a float32 product may run in TF32 (10-bit mantissa) when the training
code has enabled it globally, which would make the search inexact, and switching the global flag here
could break the caller (torch refuses to mix its legacy and new TF32 switches). Results are re-sorted so that
ties in similarity go to the lower index, which makes every caller's neighbour lists deterministic whatever
the backend's internal order is.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import torch

__all__ = ["knn_search", "torch_knn"]

# Extra neighbours fetched so that ties straddling the k-th place can be resolved by index.
_TIE_MARGIN = 8
# Similarity entries computed at once by the torch search (1 GiB of float64).
_BLOCK_ENTRIES = 1 << 27


def _as_float32(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _load_faiss() -> ModuleType | None:
    """The faiss module, or ``None`` where it is not installed (imported here, not at module load, so that
    ``spal`` runs without it)."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _faiss_gpu(faiss: ModuleType) -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _sort_ties(sims: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by decreasing similarity, ties by increasing index, and keep ``k`` columns."""
    order = np.lexsort((idx, -sims), axis=1)
    sims = np.take_along_axis(sims, order, axis=1)[:, :k]
    idx = np.take_along_axis(idx, order, axis=1)[:, :k]
    return sims.astype(np.float32, copy=False), idx.astype(np.int64, copy=False)


def torch_knn(database: torch.Tensor, k: int, queries: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product k-NN in torch, on the tensors' device (the path without faiss, or on CUDA without
    faiss GPU).

    Args:
        database: ``(n, d)`` float tensor.
        k: neighbours per query, ``1 <= k <= n``.
        queries: ``(m, d)`` float tensor on the same device, or ``None`` for the database itself.

    Returns:
        Same as :func:`knn_search`.
    """
    db = database.detach().double()
    q = db if queries is None else queries.detach().to(db.device, torch.float64)
    n = db.shape[0]
    extra = min(n, k + _TIE_MARGIN)
    block = max(1, _BLOCK_ENTRIES // max(n, 1))
    sims, idx = [], []
    for start in range(0, q.shape[0], block):
        values, indices = torch.topk(q[start : start + block] @ db.T, extra, dim=1)
        sims.append(values.cpu())  # float64 until the ties are sorted
        idx.append(indices.cpu())
    return _sort_ties(torch.cat(sims).numpy(), torch.cat(idx).numpy(), k)


def knn_search(
    database: torch.Tensor | np.ndarray,
    k: int,
    queries: torch.Tensor | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Find the ``k`` database points with the largest inner product to each query.

    Args:
        database: ``(n, d)`` float features (L2-normalised for cosine similarity). A CUDA tensor is searched
            on its device.
        k: neighbours per query; clipped to ``n``.
        queries: ``(m, d)`` float features; ``None`` searches the database against itself, in which case a
            point's own entry (similarity 1 on normalised features) normally comes first.

    Returns:
        ``(similarities, indices)``: ``(m, k)`` float32 and ``(m, k)`` int64 arrays, each row sorted by
        decreasing similarity, ties broken by increasing index.
    """
    on_cuda = isinstance(database, torch.Tensor) and database.is_cuda
    n, d = database.shape
    m = n if queries is None else queries.shape[0]
    k = min(int(k), n)
    if k <= 0 or m == 0:
        return np.zeros((m, max(k, 0)), np.float32), np.zeros((m, max(k, 0)), np.int64)
    faiss = _load_faiss()
    if faiss is None or (on_cuda and not _faiss_gpu(faiss)):
        q = None if queries is None else torch.as_tensor(queries)
        return torch_knn(torch.as_tensor(database), k, q)
    db = _as_float32(database)
    q = db if queries is None else _as_float32(queries)
    index = faiss.IndexFlatIP(d)
    if on_cuda:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(db)
    sims, idx = index.search(q, min(n, k + _TIE_MARGIN))
    return _sort_ties(sims, idx, k)
