"""k-reciprocal Jaccard distance (Zhong et al., CVPR 2017, as SpCL computes it), sparse from end to end.

SPEC section 3.1 gives the definition; this module follows it step by step, but never builds an ``n x n``
dense array: every intermediate is a CSR matrix or an ``(n, k)`` neighbour table, and the final sum of
minima is taken only over pairs whose supports overlap. Peak memory is therefore linear in ``n`` (times the
neighbourhood sizes), which is what lets MSMT17 (n = 32,621, a 4.3 GB dense float32 matrix) run on a
laptop-sized machine.

Steps and the arrays they produce (n points, k = k1 clipped to n):

1. a ranked neighbour table ``idx (n, K)``, self first, ``K = min(n, 4 k)``: its first ``k`` columns are the
   lists, the rest caches inner products for step 3 (:func:`ranked_neighbours`);
2. the k-reciprocal sets R and R_half as sparse patterns (:func:`reciprocal_neighbours`);
3. the expanded supports as a boolean CSR, then the softmax weights ``V`` (:func:`encode_neighbourhoods`);
4. query expansion ``V <- Q V`` with ``Q`` the ``k2``-neighbour averaging matrix (:func:`query_expansion`);
5. ``s(i, j) = sum_k min(V[i, k], V[j, k])`` for ``i < j`` sharing support (:func:`pairwise_min_sums`);
6. ``d = 1 - s / (2 - s)`` clipped at 0, symmetrised, diagonal stored as explicit zeros.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import scipy.sparse as sp
import torch

from spal.clustering.knn import knn_search

__all__ = [
    "distances_from_overlaps",
    "encode_neighbourhoods",
    "half_list_length",
    "jaccard_distance",
    "pairwise_min_sums",
    "query_expansion",
    "ranked_neighbours",
    "reciprocal_neighbours",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Largest accepted | |f|^2 - 1 | (loose enough for features stored in half precision).
_NORM_TOLERANCE = 1e-2
# Width of the k-NN table, in multiples of k1 (see jaccard_distance).
_TABLE_WIDTH = 4
# Pairs generated at once on a torch device (~32 bytes each of temporaries).
_DEVICE_PAIR_CHUNK = 1 << 25
# Rows handled at once by the chunked steps: bounds the temporary arrays to a few tens of MB.
_ROW_CHUNK = 4096
# Pairs generated at once by the sum of minima: ~40 MB of temporaries, small enough to stay in the caches
# and to reuse freed memory instead of faulting in fresh pages (4x faster than 8x larger blocks here).
_PAIR_CHUNK = 1 << 20


def half_list_length(k1: int) -> int:
    """Length of the "half" neighbour list: ``round(k1 / 2) + 1``, numpy's half-to-even rounding.

    SpCL slices ``initial_rank[:, :int(np.around(k1 / 2)) + 1]``: 16 for ``k1 = 30``, 1 for ``k1 = 1``
    (``np.around(0.5) = 0``), 3 for ``k1 = 5`` (``np.around(2.5) = 2``).
    """
    return int(np.around(k1 / 2)) + 1


def ranked_neighbours(features: torch.Tensor | np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of every point, the point itself first.

    Args:
        features: ``(n, d)`` L2-normalised features (a CUDA tensor is searched on its device).
        k: list length, ``1 <= k <= n``.

    Returns:
        ``(sims, idx)``: ``(n, k)`` float32 inner products and ``(n, k)`` int64 indices. Column 0 is the point
        itself; the others follow by decreasing similarity, ties to the lower index (``knn_search``'s order).
        Forcing self first matters only when another point has the very same feature (or a float rounding
        puts one above ``f_i . f_i``): SPEC 3.1 defines the lists with self first.
    """
    sims, idx = knn_search(features, k)
    n = idx.shape[0]
    own = np.arange(n)[:, None]
    is_self = idx == own
    # A stable sort on "is not self" moves self to column 0 and keeps the others in their order.
    order = np.argsort(~is_self, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    sims = np.take_along_axis(sims, order, axis=1)
    missing = np.flatnonzero(~is_self.any(axis=1))
    if missing.size:
        # More than k - 1 exact duplicates with lower indices pushed self out of its own list: put it back.
        feats = _as_numpy(features)
        idx[missing, 1:] = idx[missing, :-1]
        sims[missing, 1:] = sims[missing, :-1]
        idx[missing, 0] = missing
        sims[missing, 0] = np.einsum("ij,ij->i", feats[missing], feats[missing])
    return sims, idx


def reciprocal_neighbours(idx: np.ndarray, length: int) -> sp.csr_matrix:
    """The k-reciprocal sets for lists of the given length, as a sparse pattern.

    Args:
        idx: ``(n, k)`` int64 ranked neighbour lists (self first, distinct entries), ``length <= k``.
        length: list length of the test (``k1`` for R, the half length for R_half).

    Returns:
        ``(n, n)`` canonical CSR, data 1.0: row ``i`` holds ``j`` iff ``j`` is among ``idx[i, :length]`` and
        ``i`` among ``idx[j, :length]`` (so ``i`` itself is always there).
    """
    n = idx.shape[0]
    lists = sp.csr_matrix(
        (np.ones(n * length), idx[:, :length].ravel(), np.arange(0, n * length + 1, length)), shape=(n, n)
    )
    lists.sort_indices()
    # Reciprocal = the pair is in the list pattern both ways: an element-wise product with the transpose.
    return sp.csr_matrix(lists.multiply(lists.T))


def encode_neighbourhoods(
    sims: np.ndarray, idx: np.ndarray, features: torch.Tensor | np.ndarray, k1: int
) -> sp.csr_matrix:
    """Softmax weights over each point's expanded k-reciprocal set (the ``V`` of SPEC 3.1, before expansion).

    Args:
        sims: ``(n, K)`` float32 inner products matching ``idx``.
        idx: ``(n, K)`` int64 ranked lists from :func:`ranked_neighbours`, ``K >= min(k1, n)``: the first
            ``min(k1, n)`` columns are the neighbour lists, and the whole table serves as a cache of inner
            products (an expanded member can lie beyond the k1-th neighbour; most lie within ~4 k1).
        features: ``(n, d)`` the features, for the inner products the table does not hold.
        k1: list length (the half length is derived from it), clipped to ``n``.

    Returns:
        ``(n, n)`` float64 CSR with sorted indices; row ``i`` sums to 1 and holds
        ``softmax_j(-(2 - 2 f_i . f_j))`` over the expanded set of ``i``.
    """
    n = idx.shape[0]
    k = min(k1, n)
    if idx.shape[1] < k:
        raise ValueError(f"the neighbour table has {idx.shape[1]} columns, fewer than k1 = {k}")
    rec = reciprocal_neighbours(idx, k)
    rec_half = reciprocal_neighbours(idx, min(half_list_length(k1), k))
    # overlap[i, c] = |R(i) & R_half(c)|; sampled on R's own pattern (c in R(i), where it is >= 1 since c is
    # in both sets) by the element-wise product.
    overlap = rec.multiply(rec @ rec_half.T).tocsr()
    overlap.sort_indices()
    half_sizes = np.diff(rec_half.indptr)
    # "> 2/3 of its size" in exact integer arithmetic.
    accepted = 3 * overlap.data > 2 * half_sizes[overlap.indices]
    take = sp.csr_matrix((accepted.astype(np.float64), overlap.indices, overlap.indptr), shape=(n, n))
    take.eliminate_zeros()
    support = (rec + take @ rec_half).tocsr()
    support.sum_duplicates()
    support.sort_indices()
    rows = np.repeat(np.arange(n), np.diff(support.indptr))
    dots = _support_inner_products(rows, support.indices, sims, idx, features)
    weights = np.exp(2.0 * dots - 2.0)  # -(2 - 2 f_i . f_j) lies in [-4, 0]: no overflow, no max-shift needed
    # Every row holds at least its own point, so reduceat sees no empty row.
    totals = np.add.reduceat(weights, support.indptr[:-1])
    weights /= np.repeat(totals, np.diff(support.indptr))
    out = sp.csr_matrix((weights, support.indices, support.indptr), shape=(n, n))
    out.has_sorted_indices = True
    return out


def _support_inner_products(
    rows: np.ndarray,
    cols: np.ndarray,
    sims: np.ndarray,
    idx: np.ndarray,
    features: torch.Tensor | np.ndarray,
) -> np.ndarray:
    """``f_rows . f_cols`` (float64): read from the k-NN table when it holds the pair, else computed."""
    n = idx.shape[0]
    out = np.empty(rows.size, dtype=np.float64)
    # Row-major keys of the table with each row sorted by column: one globally sorted array to search.
    order = np.argsort(idx, axis=1)
    known = (np.arange(n)[:, None] * n + np.take_along_axis(idx, order, axis=1)).ravel()
    known_sims = np.take_along_axis(sims, order, axis=1).ravel()
    keys = rows * n + cols
    pos = np.minimum(np.searchsorted(known, keys), known.size - 1)
    found = known[pos] == keys
    out[found] = known_sims[pos[found]]
    missing = np.flatnonzero(~found)
    # Expanded members beyond the table (rare with the wide table): one dot product each.
    on_cuda = isinstance(features, torch.Tensor) and features.is_cuda
    feats = features.detach().float() if on_cuda else _as_numpy(features)
    for start in range(0, missing.size, _ROW_CHUNK):
        sel = missing[start : start + _ROW_CHUNK]
        if on_cuda:
            r = torch.from_numpy(rows[sel]).to(feats.device)
            c = torch.from_numpy(cols[sel]).to(feats.device)
            out[sel] = (feats[r] * feats[c]).sum(dim=1).cpu().numpy()
        else:
            out[sel] = np.einsum("ij,ij->i", feats[rows[sel]], feats[cols[sel]])
    return out


def query_expansion(weights: sp.csr_matrix, idx: np.ndarray, k2: int) -> sp.csr_matrix:
    """Replace each row of ``V`` by the mean of the rows of its first ``k2`` neighbours (self included).

    Args:
        weights: ``(n, n)`` CSR ``V``.
        idx: ``(n, k)`` ranked lists (self first); ``k2`` is clipped to ``k``.
        k2: expansion size; 1 returns ``weights`` unchanged (SPEC 3.1 skips the step).

    Returns:
        ``(n, n)`` CSR ``Q @ V`` with sorted indices, ``Q[i, idx[i, t]] = 1 / k2`` for ``t < k2``.
    """
    n, k = idx.shape
    k2 = min(k2, k)
    if k2 <= 1:
        return weights
    cols = idx[:, :k2].ravel()
    averaging = sp.csr_matrix((np.full(cols.size, 1.0 / k2), cols, np.arange(0, cols.size + 1, k2)), shape=(n, n))
    out = (averaging @ weights).tocsr()
    out.sort_indices()
    return out


def pairwise_min_sums(weights: sp.csr_matrix, device: torch.device | str | None = None) -> sp.csr_matrix:
    """``s(i, j) = sum_k min(V[i, k], V[j, k])`` for every pair ``i < j`` whose supports share a column.

    The work is one ``min`` per (pair, shared column), the same count as the sparse product ``V V^T``. Each
    entry ``(i, k)`` of ``V`` meets the entries of column ``k`` that come after it in CSC order, i.e. the
    rows ``j > i`` holding ``k``; taking the entries ``(i, k)`` in CSR order yields the pairs grouped by
    ``i``. On the CPU a sparse product with the identity then sums the duplicate ``(i, j)`` (one per shared
    column) in linear time; on a torch device a sort of the pair keys does.

    Args:
        weights: ``(n, n)`` CSR ``V`` with positive stored values and sorted indices.
        device: ``None`` for numpy/scipy, or a torch device (e.g. the CUDA device of the features) to
            generate and sum the pairs there.

    Returns:
        ``(n, n)`` float64 CSR with sorted indices, strictly upper triangular: the pairs ``i < j`` with
        ``s > 0``.
    """
    n = weights.shape[0]
    layout = _ColumnSuccessors.of(weights)
    if device is not None:
        return _min_sums_torch(weights, layout, torch.device(device))
    identity = sp.identity(n, dtype=np.float64, format="csr")
    parts = []
    for start, stop in _row_chunks(layout.per_row, _PAIR_CHUNK):
        lo, hi = weights.indptr[start], weights.indptr[stop]
        counts = layout.count[lo:hi]
        keep = counts > 0
        counts, first = counts[keep], layout.first[lo:hi][keep]
        # Partner slots: the runs first[g], first[g] + 1, ..., first[g] + counts[g] - 1, by one cumsum.
        steps = np.ones(int(counts.sum()), dtype=np.int64)
        steps[np.cumsum(counts) - counts] = first - np.concatenate(([0], first[:-1] + counts[:-1] - 1))
        partner = np.cumsum(steps)
        mins = np.minimum(np.repeat(weights.data[lo:hi][keep], counts), layout.values[partner])
        indptr = np.zeros(stop - start + 1, dtype=np.int64)
        np.cumsum(layout.per_row[start:stop], out=indptr[1:])
        duplicates = sp.csr_matrix((mins, layout.rows[partner], indptr), shape=(stop - start, n))
        parts.append(duplicates @ identity)
    if not parts:
        return sp.csr_matrix((n, n), dtype=np.float64)
    out = sp.vstack(parts, format="csr")
    out.sort_indices()
    return out


@dataclasses.dataclass(frozen=True)
class _ColumnSuccessors:
    """For every CSR entry ``e = (i, k)`` of ``V``: the entries of column ``k`` with a larger row.

    In CSC order (rows increasing within a column) those are the slots
    ``first[e] .. first[e] + count[e] - 1``; ``rows`` and ``values`` are the CSC row indices and values,
    ``per_row[i]`` the number of pairs row ``i`` generates.
    """

    first: np.ndarray
    count: np.ndarray
    rows: np.ndarray
    values: np.ndarray
    per_row: np.ndarray

    @classmethod
    def of(cls, weights: sp.csr_matrix) -> _ColumnSuccessors:
        nnz = weights.nnz
        # Transposing entry numbers gives the CSC slot of every CSR entry.
        order = sp.csr_matrix((np.arange(1, nnz + 1), weights.indices, weights.indptr), shape=weights.shape).tocsc()
        slot = np.empty(nnz, dtype=np.int64)
        slot[order.data - 1] = np.arange(nnz)
        column_end = np.repeat(order.indptr[1:], np.diff(order.indptr))
        count = column_end[slot] - 1 - slot
        return cls(
            first=slot + 1,
            count=count,
            rows=order.indices.astype(np.int64),
            values=weights.data[order.data - 1],
            per_row=_row_sums(count, weights.indptr),
        )


def _min_sums_torch(weights: sp.csr_matrix, layout: _ColumnSuccessors, device: torch.device) -> sp.csr_matrix:
    """:func:`pairwise_min_sums` with the pairs generated and summed by torch on ``device``."""
    n = weights.shape[0]

    def put(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)

    entry_rows = np.repeat(np.arange(n), np.diff(weights.indptr))
    rows, values = put(layout.rows), put(layout.values)
    keys, sums = [], []
    for start, stop in _row_chunks(layout.per_row, _DEVICE_PAIR_CHUNK):
        lo, hi = weights.indptr[start], weights.indptr[stop]
        keep = layout.count[lo:hi] > 0
        counts = layout.count[lo:hi][keep]
        total = int(counts.sum())
        if total == 0:
            continue
        counts_t = put(counts)
        # Partner slot of pair p of entry g: first[g] + (p - start of g's run).
        shift = put(layout.first[lo:hi][keep] - (np.cumsum(counts) - counts))
        partner = torch.arange(total, device=device) + torch.repeat_interleave(shift, counts_t, output_size=total)
        own = torch.repeat_interleave(put(weights.data[lo:hi][keep]), counts_t, output_size=total)
        row = torch.repeat_interleave(put(entry_rows[lo:hi][keep]), counts_t, output_size=total)
        unique, inverse = torch.unique(row * n + rows[partner], return_inverse=True)
        total_min = torch.zeros(unique.numel(), dtype=torch.float64, device=device)
        total_min.index_add_(0, inverse, torch.minimum(own, values[partner]))
        keys.append(unique.cpu().numpy())
        sums.append(total_min.cpu().numpy())
    key = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    # Chunks cover increasing row ranges and torch.unique sorts: the keys are in CSR order already.
    indptr = np.searchsorted(key, np.arange(n + 1) * n)
    out = sp.csr_matrix((np.concatenate(sums) if sums else np.zeros(0), key % n, indptr), shape=(n, n))
    out.has_sorted_indices = True
    return out


def _row_chunks(weights: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Split ``range(len(weights))`` into consecutive ranges whose weight sums stay near ``budget``."""
    n = weights.size
    bounds = np.searchsorted(np.cumsum(weights), np.arange(budget, int(weights.sum()) + budget, budget), side="right")
    edges = np.unique(np.concatenate(([0], np.minimum(bounds, n), [n])))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


def jaccard_distance(
    features: torch.Tensor | np.ndarray,
    k1: int = 30,
    k2: int = 6,
    *,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> sp.csr_matrix:
    """k-reciprocal Jaccard distance of SPEC 3.1, as a sparse matrix.

    Args:
        features: ``(n, d)`` L2-normalised features (torch tensor, CPU or CUDA, or numpy array); the k-NN
            search runs on the tensor's device.
        k1: neighbour-list length (self included); clipped to ``n``.
        k2: query-expansion size (self included); 1 skips the expansion; clipped to ``min(k1, n)``.
        neighbours: a precomputed :func:`neighbour_table` of the same features (so that the epoch's support-pair
            selection can reuse the one search); computed here when ``None``.

    Returns:
        ``(n, n)`` float32 CSR with sorted indices, symmetric: ``d(i, j)`` for every pair with ``d < 1``
        (``d = 1 - s / (2 - s)`` clipped at 0), the diagonal stored as explicit zeros. An absent entry means
        distance 1 (the two supports do not overlap).

    The time of each step is logged at DEBUG level (``extra={"stage": name, "seconds": s}``).
    """
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1 (got k1={k1}, k2={k2}); the paper uses k1=30, k2=6")
    if len(features.shape) != 2:
        raise ValueError(f"features must be a 2-D (n, d) array, got shape {tuple(features.shape)}")
    n = features.shape[0]
    if n == 0:
        return sp.csr_matrix((0, 0), dtype=np.float32)
    clock = _StageClock()
    k = min(k1, n)
    if neighbours is None:
        sims, idx = clock("knn", neighbour_table, features, k1)
    else:
        sims, idx = neighbours
        if idx.shape != (n, min(n, _TABLE_WIDTH * k)):
            raise ValueError(
                f"neighbours must be neighbour_table(features, k1={k1}), shape ({n}, "
                f"{min(n, _TABLE_WIDTH * k)}); got {idx.shape}"
            )
    _check_normalised(sims[:, 0])
    weights = clock("encode", encode_neighbourhoods, sims, idx, features, k1)
    weights = clock("query_expansion", query_expansion, weights, idx[:, :k], k2)
    on_cuda = isinstance(features, torch.Tensor) and features.is_cuda
    sums = clock("min_sums", pairwise_min_sums, weights, features.device if on_cuda else None)
    return clock("assemble", distances_from_overlaps, sums)


def neighbour_table(features: torch.Tensor | np.ndarray, k1: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """The k-NN table :func:`jaccard_distance` works from: :func:`ranked_neighbours` of ``4 k1`` entries.

    A wider search costs the same as a k1 search (the inner products dominate) and saves most of the dot products
    of expanded members lying beyond the k1-th neighbour; the support-pair selection reuses it too.

    Returns:
        ``(sims, idx)``: ``(n, min(n, 4 k1))`` float32 and int64, self first, then by decreasing similarity.
    """
    n = features.shape[0]
    return ranked_neighbours(features, min(n, _TABLE_WIDTH * min(k1, n)))


def _check_normalised(self_similarity: np.ndarray) -> None:
    """Refuse features that are not L2-normalised (``f_i . f_i`` far from 1): the weights would be wrong."""
    worst = float(np.abs(self_similarity - 1.0).max())
    if worst > _NORM_TOLERANCE:
        raise ValueError(
            f"features must be L2-normalised (some |f|^2 is off 1 by {worst:.3g}); normalise them first, "
            "e.g. torch.nn.functional.normalize(features, dim=1)"
        )


class _StageClock:
    """Runs one step, logs its wall time at DEBUG level, returns its value."""

    def __call__(self, stage: str, function: Callable[..., _T], *args: object) -> _T:
        start = time.perf_counter()
        value = function(*args)
        seconds = time.perf_counter() - start
        logger.debug("jaccard %s: %.3f s", stage, seconds, extra={"stage": stage, "seconds": seconds})
        return value


def distances_from_overlaps(sums: sp.csr_matrix) -> sp.csr_matrix:
    """The final distance matrix from the strictly upper-triangular overlaps ``s``.

    Args:
        sums: ``(n, n)`` CSR from :func:`pairwise_min_sums`.

    Returns:
        ``(n, n)`` float32 canonical CSR: ``d = 1 - s / (2 - s)`` clipped at 0 for the pairs with ``d < 1``,
        mirrored, and the diagonal as explicit zeros.
    """
    n = sums.shape[0]
    dist = np.maximum(1.0 - sums.data / (2.0 - sums.data), 0.0).astype(np.float32)
    # float32 rounding can turn a tiny overlap into exactly 1, which is what an absent entry means anyway.
    keep = dist < 1.0
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(_row_sums(keep.astype(np.int64), sums.indptr), out=indptr[1:])
    upper = sp.csr_matrix((dist[keep], sums.indices[keep], indptr), shape=(n, n))
    upper.has_sorted_indices = True
    return _symmetric_with_zero_diagonal(upper)


def _row_sums(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Sum of ``values[indptr[i]:indptr[i + 1]]`` for every row ``i`` (empty rows give 0)."""
    totals = np.zeros(values.size + 1, dtype=values.dtype)
    np.cumsum(values, out=totals[1:])
    return totals[indptr[1:]] - totals[indptr[:-1]]


def _symmetric_with_zero_diagonal(upper: sp.csr_matrix) -> sp.csr_matrix:
    """Canonical CSR ``U + U^T`` plus an explicit zero diagonal, from a strictly upper-triangular ``U``.

    Row ``i`` is laid out as [``U^T`` row ``i`` (columns < i), ``i``, ``U`` row ``i`` (columns > i)], each
    part already sorted, so no sort is needed.
    """
    n = upper.shape[0]
    lower = upper.T.tocsr()
    lower.sort_indices()
    below, above = np.diff(lower.indptr), np.diff(upper.indptr)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(below + 1 + above, out=indptr[1:])
    indices = np.empty(indptr[-1], dtype=np.int32)
    data = np.empty(indptr[-1], dtype=np.float32)
    at_lower = np.repeat(indptr[:-1] - lower.indptr[:-1], below) + np.arange(lower.nnz)
    at_upper = np.repeat(indptr[:-1] + below + 1 - upper.indptr[:-1], above) + np.arange(upper.nnz)
    at_diagonal = indptr[:-1] + below
    indices[at_lower], data[at_lower] = lower.indices, lower.data
    indices[at_upper], data[at_upper] = upper.indices, upper.data
    indices[at_diagonal], data[at_diagonal] = np.arange(n), 0.0
    out = sp.csr_matrix((data, indices, indptr), shape=(n, n))
    out.has_sorted_indices = True
    return out
