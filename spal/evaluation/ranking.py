"""Retrieval metrics of the Market-1501 protocol (SPEC section 3.6): mAP, mINP and CMC rank-k.

The gallery is ranked for every query by Euclidean distance; gallery images of the query's identity taken
by the query's camera are removed; equal distances keep gallery order (what a stable sort of the distance row
gives). AP is non-interpolated, INP is (number of true matches) / (rank of the last one), and every mean is
over the queries that keep at least one true match.

How it stays fast at MSMT17 size (11,659 x 82,161) without sorting 958 million distances:
a true match's rank is one plus the number of valid gallery images ranked before it, and everything ranked
after a query's *last* true match is irrelevant to all of its metrics. So each block of queries is handled as

1. one matrix product for the ranking key ``||g||^2 - 2 q.g`` (the squared distance minus the per-query
   constant ``||q||^2``, hence the same order, with less rounding than adding that constant back), by numpy's
   BLAS on the CPU (faster there than torch's, see ``_ranking_keys``) and by torch on the GPU;
2. the same-identity pairs come from the gallery grouped by pid (no query x gallery label comparison);
3. the *candidates* of a query are the valid gallery images whose key is not above that of its farthest true
   match; only they are sorted, as unique int64 keys (row, float bits, gallery index), so that the integer
   order is exactly the stable order of the distances;
4. the rank of each true match is its position among its row's sorted candidates (a ``searchsorted``).

The cost is one matrix product plus a few linear passes over the block and a sort of the candidates; on real
re-id features the last true match sits far ahead of most of the gallery, so the sort is small.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

__all__ = ["evaluate", "pairwise_squared_distance"]

logger = logging.getLogger(__name__)

ArrayLike = torch.Tensor | np.ndarray | Sequence[int]

# Bytes of one block of the (queries x gallery) key matrix; the block is the big allocation of evaluate.
_BLOCK_BYTES = 256 * 2**20
# Candidates sorted at once; each costs up to ~60 bytes in flight (indices, value, key temporaries, sort).
_CANDIDATE_BUDGET = 2**21
# Rows of the squared-norm computation at once: the temporary of the element-wise square stays in cache.
_NORM_ROWS = 1024
# Bits of the float32 key inside the composite int64 sort key.
_VALUE_BITS = 32


def pairwise_squared_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of ``x`` and of ``y``.

    Args:
        x: ``(m, d)`` float tensor.
        y: ``(n, d)`` float tensor on the same device.

    Returns:
        ``(m, n)`` tensor in ``x``'s dtype, ``||x_i||^2 + ||y_j||^2 - 2 x_i . y_j`` clamped at 0 (the
        expansion can round a little below zero for near-identical rows).
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"pairwise_squared_distance needs (m, d) and (n, d) tensors with the same d, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    y = y.to(x.dtype)
    distances = torch.addmm(_squared_norms(y).unsqueeze(0), x, y.T, alpha=-2)
    return distances.add_(_squared_norms(x).unsqueeze(1)).clamp_(min=0)


def evaluate(
    query_features: torch.Tensor | np.ndarray,
    gallery_features: torch.Tensor | np.ndarray,
    query_pids: ArrayLike,
    gallery_pids: ArrayLike,
    query_camids: ArrayLike,
    gallery_camids: ArrayLike,
    ranks: Sequence[int] = (1, 5, 10),
    chunk_size: int | None = None,
) -> dict[str, float | int]:
    """Rank the gallery for every query and score the rankings (SPEC section 3.6).

    Args:
        query_features: ``(m, d)`` features (L2-normalised in the protocol; any finite values are accepted),
            a torch tensor or a numpy array; computed in float32.
        gallery_features: ``(n, d)`` features, same kind.
        query_pids, gallery_pids: ``(m,)`` and ``(n,)`` integer identity labels.
        query_camids, gallery_camids: ``(m,)`` and ``(n,)`` integer camera labels. Pids and camids are plain
            labels: no value is special (junk and distractors are the loaders' business).
        ranks: the CMC ranks to report, positive ints.
        chunk_size: queries scored together; ``None`` picks it so that one block of keys takes about 256 MB.

    Returns:
        ``{"mAP", "mINP", "rank<k>" for each k in ranks, "num_valid_queries"}``: the metrics are floats in
        ``[0, 1]`` averaged over the ``num_valid_queries`` queries (an int) that keep a true match after the
        same-camera removal; the others are skipped. With no valid query at all every metric is 0.0 (and a
        warning is logged).

    Runs on the GPU when either feature matrix is a CUDA tensor, on the CPU otherwise. The distances are
    computed in float32 with autocast and TF32/bf16 matmul off, whatever the caller's settings.
    """
    ranks = _check_ranks(ranks)
    device = _pick_device(query_features, gallery_features)
    query = _as_features(query_features, "query_features", device)
    gallery = _as_features(gallery_features, "gallery_features", device)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query_features has {query.shape[1]} dims but gallery_features has {gallery.shape[1]}; "
            "extract both with the same model"
        )
    num_query, num_gallery = query.shape[0], gallery.shape[0]
    q_pids = _as_labels(query_pids, "query_pids", num_query, device)
    g_pids = _as_labels(gallery_pids, "gallery_pids", num_gallery, device)
    q_cams = _as_labels(query_camids, "query_camids", num_query, device)
    g_cams = _as_labels(gallery_camids, "gallery_camids", num_gallery, device)

    col_bits = max(1, (num_gallery - 1).bit_length())
    if col_bits > 63 - _VALUE_BITS - 1:
        raise ValueError(f"a gallery of {num_gallery} images is too large for the int64 sort keys; split it")
    # The query's row inside a block shares the int64 key with the float bits and the gallery index.
    max_rows = 2 ** (63 - _VALUE_BITS - col_bits)
    if chunk_size is None:
        chunk_size = max(1, _BLOCK_BYTES // (4 * max(num_gallery, 1)))
    elif not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    chunk_size = min(chunk_size, max_rows)

    ap_sum = torch.zeros(num_query, dtype=torch.float64, device=device)
    num_matches = torch.zeros(num_query, dtype=torch.int64, device=device)
    first_rank = torch.zeros(num_query, dtype=torch.int64, device=device)
    last_rank = torch.zeros(num_query, dtype=torch.int64, device=device)
    with _exact_float32_matmul(device):
        gallery_norms = _squared_norms(gallery)
        if not bool(torch.isfinite(gallery_norms).all()) or not bool(torch.isfinite(_squared_norms(query)).all()):
            raise ValueError("the features contain NaN or inf (or overflow when squared); check the model output")
        pid_order, pid_sorted = _group_by_pid(g_pids)
        for start in range(0, num_query, chunk_size):
            stop = min(start + chunk_size, num_query)
            rows, cols = _same_pid_pairs(q_pids[start:stop], pid_order, pid_sorted)
            is_junk = q_cams[start:stop][rows] == g_cams[cols]
            keys = _ranking_keys(query[start:stop], gallery, gallery_norms)
            block_stats = _score_block(keys, rows[~is_junk], cols[~is_junk], rows[is_junk], cols[is_junk], col_bits)
            for total, block in zip((ap_sum, num_matches, first_rank, last_rank), block_stats):
                total[start:stop] = block
            del keys

    return _summarise(ap_sum, num_matches, first_rank, last_rank, ranks)


def _ranking_keys(query: torch.Tensor, gallery: torch.Tensor, gallery_norms: torch.Tensor) -> torch.Tensor:
    """``(b, d)`` queries, ``(n, d)`` gallery, ``(n,)`` squared gallery norms -> ``(b, n)`` float32 keys
    ``||g||^2 - 2 q.g`` (the squared distance minus ``||q||^2``: same order within a row)."""
    if query.is_cuda:
        return torch.addmm(gallery_norms.unsqueeze(0), query, gallery.T, alpha=-2)
    # On the CPU the product (nearly all of evaluate's time) goes through numpy's BLAS: the OpenBLAS of the
    # numpy wheels ran it ~1.6x faster than torch's MKL sgemm on AMD EPYC (harness/bench/evaluation.py
    # records both). Scaling q by -2 first is exact, so the keys are the same float32 expression.
    keys = torch.empty(query.shape[0], gallery.shape[0])
    np.matmul((query * -2).numpy(), gallery.numpy().T, out=keys.numpy())
    return keys.add_(gallery_norms)


def _score_block(
    keys: torch.Tensor,
    good_rows: torch.Tensor,
    good_cols: torch.Tensor,
    junk_rows: torch.Tensor,
    junk_cols: torch.Tensor,
    col_bits: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score one block of queries from its ranking keys.

    Args:
        keys: ``(b, n)`` float32 ranking keys (smaller is closer); overwritten (junk entries set to +inf).
        good_rows, good_cols: ``(p,)`` int64 true matches (row in the block, gallery index), rows ascending.
        junk_rows, junk_cols: ``(j,)`` int64 same-identity same-camera pairs, to be ignored.
        col_bits: bits that hold a gallery index in the composite sort key.

    Returns:
        ``(ap_sum, num_matches, first_rank, last_rank)``, each ``(b,)``: the sum over a query's true
        matches of (matches so far) / rank (float64), their number, and the 1-based ranks of the first and
        last one (0 for a query without true matches).
    """
    num_rows, num_gallery = keys.shape
    device = keys.device
    keys[junk_rows, junk_cols] = math.inf
    good_keys = keys[good_rows, good_cols]
    farthest = torch.full((num_rows,), -math.inf, dtype=keys.dtype, device=device)
    farthest.scatter_reduce_(0, good_rows, good_keys, reduce="amax")
    matches_per_row = torch.bincount(good_rows, minlength=num_rows)
    match_bounds = _exclusive_cumsum(matches_per_row)

    ap_sum = torch.zeros(num_rows, dtype=torch.float64, device=device)
    first_rank = torch.zeros(num_rows, dtype=torch.int64, device=device)
    last_rank = torch.zeros(num_rows, dtype=torch.int64, device=device)
    # Rows go in groups small enough that even a group where every image is a candidate fits the budget.
    group_rows = max(1, _CANDIDATE_BUDGET // max(num_gallery, 1))
    for lo in range(0, num_rows, group_rows):
        hi = min(lo + group_rows, num_rows)
        group_keys = keys[lo:hi]
        # A flat nonzero is cheaper than a 2-D one (one index column to write instead of two).
        flat = (group_keys <= farthest[lo:hi].unsqueeze(1)).view(-1).nonzero().squeeze(1)
        cand_rows, cand_cols = flat // num_gallery, flat % num_gallery
        del flat
        cand_before_row = _exclusive_cumsum(torch.bincount(cand_rows, minlength=hi - lo))
        cand_keys = _sort_keys(cand_rows, group_keys[cand_rows, cand_cols], cand_cols, col_bits)
        del cand_rows, cand_cols
        cand_keys = torch.sort(cand_keys).values
        first, last = int(match_bounds[lo]), int(match_bounds[hi])
        rows = good_rows[first:last] - lo
        match_keys = torch.sort(_sort_keys(rows, good_keys[first:last], good_cols[first:last], col_bits)).values
        rows = match_keys >> (_VALUE_BITS + col_bits)
        # Candidates of earlier rows sort first (the row is the key's top field): subtract them.
        rank = torch.searchsorted(cand_keys, match_keys) - cand_before_row[rows] + 1
        hits_so_far = torch.arange(1, rows.numel() + 1, device=device) - (match_bounds[lo:hi] - first)[rows]
        ap_sum[lo:hi].index_add_(0, rows, hits_so_far.double() / rank.double())
        first_rank[lo:hi].scatter_reduce_(0, rows, rank, reduce="amin", include_self=False)
        last_rank[lo:hi].scatter_reduce_(0, rows, rank, reduce="amax", include_self=False)
    return ap_sum, matches_per_row, first_rank, last_rank


def _summarise(
    ap_sum: torch.Tensor,
    num_matches: torch.Tensor,
    first_rank: torch.Tensor,
    last_rank: torch.Tensor,
    ranks: tuple[int, ...],
) -> dict[str, float | int]:
    """Turn the per-query ``(m,)`` statistics of ``_score_block`` into the returned dict."""
    valid = num_matches > 0
    num_valid = int(valid.sum())
    num_query = num_matches.numel()
    if num_valid == 0:
        logger.warning(
            "none of the %d queries has a true match in the gallery (after removing same-camera images of "
            "the same identity); every metric is 0",
            num_query,
        )
        return {"mAP": 0.0, "mINP": 0.0, **{f"rank{k}": 0.0 for k in ranks}, "num_valid_queries": 0}
    if num_valid < num_query:
        logger.info("%d of %d queries have no valid true match and are skipped", num_query - num_valid, num_query)
    matches = num_matches[valid].double()
    result: dict[str, float | int] = {
        "mAP": float((ap_sum[valid] / matches).mean()),
        "mINP": float((matches / last_rank[valid].double()).mean()),
    }
    for k in ranks:
        result[f"rank{k}"] = float((first_rank[valid] <= k).double().mean())
    result["num_valid_queries"] = num_valid
    return result


def _sort_keys(rows: torch.Tensor, values: torch.Tensor, cols: torch.Tensor, col_bits: int) -> torch.Tensor:
    """Unique int64 keys whose order is (row, value, col): a stable sort of each row's float32 values.

    Args:
        rows: ``(p,)`` int64 rows in a block (< 2 ** (31 - col_bits)).
        values: ``(p,)`` finite float32 values.
        cols: ``(p,)`` int64 gallery indices (< 2 ** col_bits).
        col_bits: bits for the gallery index.

    Returns:
        ``(p,)`` int64 keys.
    """
    # + 0.0 turns -0.0 into +0.0, which compare equal as floats but not as bit patterns.
    bits = (values.float() + 0.0).view(torch.int32).to(torch.int64)
    # IEEE floats order like sign-magnitude integers: flip the magnitude bits of negative values to get
    # two's-complement order, then shift to [0, 2**32) so the field does not borrow from the row above it.
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + 2**31
    return (rows << (_VALUE_BITS + col_bits)) | (bits << col_bits) | cols


def _exclusive_cumsum(counts: torch.Tensor) -> torch.Tensor:
    """``(b,)`` counts -> ``(b + 1,)`` offsets starting at 0."""
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, dim=0)])


def _group_by_pid(gallery_pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gallery indices grouped by pid, ascending inside a group: ``(order, pids[order])``, both ``(n,)``."""
    order = torch.sort(gallery_pids, stable=True).indices
    return order, gallery_pids[order]


def _same_pid_pairs(
    query_pids: torch.Tensor, pid_order: torch.Tensor, pid_sorted: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """All (query row, gallery index) pairs with equal pids, rows ascending, then gallery index ascending.

    Args:
        query_pids: ``(b,)`` int64.
        pid_order, pid_sorted: the output of ``_group_by_pid``.

    Returns:
        ``(rows, cols)``: ``(p,)`` int64 each.
    """
    lo = torch.searchsorted(pid_sorted, query_pids, side="left")
    counts = torch.searchsorted(pid_sorted, query_pids, side="right") - lo
    rows = torch.repeat_interleave(torch.arange(query_pids.numel(), device=query_pids.device), counts)
    offset_in_group = torch.arange(rows.numel(), device=rows.device) - _exclusive_cumsum(counts)[rows]
    return rows, pid_order[lo[rows] + offset_in_group]


def _squared_norms(x: torch.Tensor) -> torch.Tensor:
    """``(n, d)`` -> ``(n,)`` sums of squares, in row blocks to keep the temporary small."""
    return torch.cat(
        [x[i : i + _NORM_ROWS].square().sum(dim=1) for i in range(0, x.shape[0], _NORM_ROWS)] or [x.new_zeros(0)]
    )


@contextlib.contextmanager
def _exact_float32_matmul(device: torch.device) -> Iterator[None]:
    """Run float32 matrix products in full float32: no autocast, no TF32 (CUDA) nor bf16 (oneDNN).

    A trainer that enabled those for speed would otherwise change the ranking (and the metrics) here.
    The previous settings are restored on exit.
    """
    backends = (torch.backends.cuda.matmul, torch.backends.mkldnn.matmul)
    saved = [backend.fp32_precision for backend in backends]
    try:
        for backend in backends:
            backend.fp32_precision = "ieee"
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    finally:
        for backend, value in zip(backends, saved):
            backend.fp32_precision = value


def _pick_device(*features: torch.Tensor | np.ndarray) -> torch.device:
    for x in features:
        if isinstance(x, torch.Tensor) and x.is_cuda:
            return x.device
    return torch.device("cpu")


def _as_features(x: torch.Tensor | np.ndarray, name: str, device: torch.device) -> torch.Tensor:
    """A ``(n, d)`` float32 tensor on ``device``; no copy for a contiguous float32 input already there."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    elif not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor or a numpy array, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (num_images, dims), got shape {tuple(x.shape)}")
    return x.detach().to(device=device, dtype=torch.float32).contiguous()


def _as_labels(x: ArrayLike, name: str, length: int, device: torch.device) -> torch.Tensor:
    """A ``(length,)`` int64 tensor on ``device`` from a tensor, array or sequence of ints."""
    if isinstance(x, torch.Tensor):
        labels = x.detach()
    else:
        array = np.asarray(x)
        if array.size == 0:
            array = array.astype(np.int64)
        labels = torch.from_numpy(array)
    if labels.dim() != 1 or labels.shape[0] != length:
        raise ValueError(f"{name} must be 1-D with one label per image ({length}), got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer labels, got dtype {labels.dtype}")
    return labels.to(device=device, dtype=torch.int64)


def _check_ranks(ranks: Sequence[int]) -> tuple[int, ...]:
    ranks = tuple(ranks)
    if not ranks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ranks):
        raise ValueError(f"ranks must be a non-empty sequence of positive ints, e.g. (1, 5, 10); got {ranks!r}")
    return tuple(int(k) for k in ranks)
