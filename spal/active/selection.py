"""Dual uncertainty selection of support pairs (SPEC section 3.3) and its ablations.

For every cluster, in increasing cluster id, DUS proposes
- the uncertain positive: the pair in C x C with the largest squared Euclidean distance, and
- the uncertain negative: the pair (a in C, b outside C, outliers included) with the smallest one,
ties going to the first pair in row-major order over members and outside points in increasing index, each pair
reported with ``a`` in C. The pairs are then asked of the oracle in that order, positive first, skipping
trivial (``a == b``) and already known pairs at no cost, while the budget lasts.

Distances are *defined* as the float64 sum of squared differences of the features' float32 values
(:func:`squared_distances`). Finding the extreme pairs is a cheap screening pass followed by an exact check:
- positives: the Gram matrix of each cluster, in row blocks; every pair within twice a rounding-error bound of
  the screened maximum is re-evaluated exactly;
- negatives: one faiss k-NN search (squared Euclidean distance turned into an inner product by appending a
  coordinate, so the features need not be normalised) of every clustered point with a small ``k``. A member
  whose list may hide an outside point that beats, or ties, the cluster's best exact candidate (its k-th
  neighbour is not clearly farther) is searched again with a larger ``k`` (at least ``|C| + k``, then
  doubling, up to ``n``), which always settles it. Only members of large or tight clusters need this.
The screening error bound, ``16 (d + 2) u max_i |f_i|^2`` with ``u`` the unit roundoff of the screening
arithmetic, is the standard worst-case bound on a length-``d`` dot product, doubled for safety: no rounding in
the screening can change which pair is chosen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np
import torch

from spal.active.constraints import ConstraintGraph
from spal.active.kinds import KINDS, STRATEGY_KINDS
from spal.active.oracle import Oracle
from spal.clustering.knn import knn_search
from spal.engine.config import CHOICES

__all__ = [
    "KINDS",
    "STRATEGIES",
    "plan_support_pairs",
    "select_support_pairs",
    "squared_distances",
]

log = logging.getLogger(__name__)

#: The selection strategies (``--selection``), as the configuration lists them.
STRATEGIES = CHOICES["selection"]
KNN_K = 64
# Entries of a screening block (rows x columns) and of a k-NN result chunk (queries x k) held at once.
_BLOCK_ENTRIES = 1 << 22
# faiss's GPU flat search returns at most this many neighbours; larger searches run on the CPU.
_GPU_MAX_K = 2048
# Consecutive draws of already-known (or ineligible) pairs after which the random strategy gives up a kind.
_MAX_DRAWS = 10_000


class _HasRemaining(Protocol):
    remaining: int


def squared_distances(features: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The squared Euclidean distances that selection compares, exactly as it defines them.

    Args:
        features: ``(n, d)`` float32 features.
        a, b: ``(m,)`` int point indices.

    Returns:
        ``(m,)`` float64: ``sum_k (f[a_i, k] - f[b_i, k])^2`` with the float32 values widened to float64.
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    out = np.empty(len(a), dtype=np.float64)
    step = max(1, _BLOCK_ENTRIES // max(1, features.shape[1]))
    for start in range(0, len(a), step):
        diff = features[a[start : start + step]].astype(np.float64) - features[b[start : start + step]]
        out[start : start + step] = (diff * diff).sum(axis=1)
    return out


def _screening_tolerance(dim: int, max_sq_norm: float, unit_roundoff: float) -> float:
    """Bound on |screened - exact| squared distance for vectors of squared norm at most ``max_sq_norm``."""
    return 16.0 * (dim + 2) * unit_roundoff * max_sq_norm


def _as_numpy(features: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(features, dtype=np.float32)


def _clusters(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Cluster ids in increasing order and each cluster's members in increasing index (outliers left out)."""
    clustered = np.flatnonzero(labels >= 0)
    order = clustered[np.argsort(labels[clustered], kind="stable")]
    ids, starts = np.unique(labels[order], return_index=True)
    return ids, np.split(order, starts[1:]) if len(order) else []


def _farthest_pairs(
    members: list[np.ndarray], feats: torch.Tensor, sq_norms: torch.Tensor, features: np.ndarray, tol: float
) -> list[tuple[int, int]]:
    """The uncertain positive of every cluster.

    Clusters are screened in batches of similar size (padded to the next power of two, one batched matmul per
    batch, so that a thousand small clusters cost a handful of tensor operations); a cluster too large for one
    block is screened alone, in row blocks.

    Args:
        members: each cluster's sorted point indices.
        feats: ``(n, d)`` float64 features (any device) used for screening.
        sq_norms: ``(n,)`` squared norms of ``feats``.
        features: ``(n, d)`` float32 features for the exact check.
        tol: screening error bound.

    Returns:
        Per cluster, ``(a, b)`` with the largest exact squared distance, first in row-major order on ties
        (``(a, a)`` for a size-1 cluster, or when all members have the same feature).
    """
    result: list[tuple[int, int]] = [(int(group[0]), int(group[0])) for group in members]
    buckets: dict[int, list[int]] = {}
    for pos, group in enumerate(members):
        if len(group) > 1:
            buckets.setdefault(1 << (len(group) - 1).bit_length(), []).append(pos)
    dim = feats.shape[1]
    for width, positions in sorted(buckets.items()):
        if width * width > _BLOCK_ENTRIES:
            for pos in positions:
                result[pos] = _farthest_pair_large(members[pos], feats, sq_norms, features, tol)
            continue
        per_batch = max(1, _BLOCK_ENTRIES // (width * max(width, dim)))
        for start in range(0, len(positions), per_batch):
            batch = positions[start : start + per_batch]
            index = np.full((len(batch), width), -1, dtype=np.int64)
            for row, pos in enumerate(batch):
                index[row, : len(members[pos])] = members[pos]
            valid = index >= 0
            index = np.where(valid, index, index[:, :1])
            index_t = torch.from_numpy(index).to(feats.device)
            x, sq = feats[index_t], sq_norms[index_t]
            screened = sq[:, :, None] + sq[:, None, :] - 2.0 * torch.bmm(x, x.transpose(1, 2))
            valid_t = torch.from_numpy(valid).to(feats.device)
            screened = screened.masked_fill(~(valid_t[:, :, None] & valid_t[:, None, :]), -torch.inf)
            threshold = screened.amax(dim=(1, 2)) - 2 * tol
            found = torch.nonzero(screened >= threshold[:, None, None]).cpu().numpy()
            rows, cols = found[:, 1], found[:, 2]
            a, b = index[found[:, 0], rows], index[found[:, 0], cols]
            exact = squared_distances(features, a, b)
            order = np.lexsort((cols, rows, -exact, found[:, 0]))
            _, first = np.unique(found[order, 0], return_index=True)
            for winner in order[first]:
                result[batch[found[winner, 0]]] = (int(a[winner]), int(b[winner]))
    return result


def _farthest_pair_large(
    members: np.ndarray, feats: torch.Tensor, sq_norms: torch.Tensor, features: np.ndarray, tol: float
) -> tuple[int, int]:
    """:func:`_farthest_pairs` for one cluster screened in row blocks (arguments as there)."""
    m = len(members)
    index = torch.from_numpy(members).to(feats.device)
    x, sq = feats[index], sq_norms[index]
    rows_per_block = max(1, _BLOCK_ENTRIES // m)
    best = -np.inf
    found: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for r0 in range(0, m, rows_per_block):
        block = x[r0 : r0 + rows_per_block]
        screened = sq[r0 : r0 + rows_per_block, None] + sq[None, :] - 2.0 * (block @ x.T)
        block_max = float(screened.max())
        if block_max < best - 2 * tol:
            continue
        best = max(best, block_max)
        rows, cols = torch.nonzero(screened >= best - 2 * tol, as_tuple=True)
        found.append((rows + r0, cols, screened[rows, cols]))
    rows, cols, values = (torch.cat(parts).cpu().numpy() for parts in zip(*found))
    keep = values >= best - 2 * tol
    a, b = members[rows[keep]], members[cols[keep]]
    exact = squared_distances(features, a, b)
    first = np.lexsort((b, a, -exact))[0]
    return int(a[first]), int(b[first])


def _augmented(features: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Inner-product forms of squared Euclidean distance: ``queries @ database.T = 2 x.y - |y|^2``.

    Returns ``(database (n, d+1), queries (n, d+1))`` float32 on the features' device, so that
    ``|x - y|^2 = |x|^2 - (queries @ database.T)``.
    """
    x = features if isinstance(features, torch.Tensor) else torch.from_numpy(features)
    x = x.detach().to(torch.float32)
    sq = (x * x).sum(dim=1, keepdim=True)
    database = torch.cat([2.0 * x, -sq], dim=1)
    queries = torch.cat([x, torch.ones_like(sq)], dim=1)
    return database, queries


def _nearest_outside_pairs(
    labels: np.ndarray,
    members: list[np.ndarray],
    features: np.ndarray,
    sq_norms: np.ndarray,
    search_features: torch.Tensor | np.ndarray,
    k: int,
    tol: float,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[int, tuple[int, int]]:
    """The uncertain negative of every cluster that does not hold every point.

    Args:
        labels: ``(n,)`` int64 cluster labels (``-1`` outliers).
        members: sorted members of each cluster, in increasing cluster id.
        features: ``(n, d)`` float32 features (exact check).
        sq_norms: ``(n,)`` float64 squared norms of ``features``.
        search_features: the same features, possibly a CUDA tensor (k-NN search there when faiss can).
        k: neighbours fetched for every clustered point in the first search.
        tol: error bound of the float32 search.
        neighbours: an inner-product k-NN table ``(sims, idx)``, ``(n, w)`` each, of the same (L2-normalised)
            features, used as the first search (on unit vectors the inner-product order is the distance order).

    Returns:
        cluster position (in ``members``) -> ``(a, b)``: ``a`` in the cluster, ``b`` outside, smallest exact
        squared distance, first in row-major order on ties.
    """
    n = len(labels)
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    position = np.full(n, -1, dtype=np.int64)
    for pos, group in enumerate(members):
        position[group] = pos
    active = [pos for pos in range(len(members)) if sizes[pos] < n]
    if not active:
        return {}
    database, query_rows = _augmented(search_features)
    best = np.full(len(members), np.inf)
    best_a = np.full(len(members), -1, dtype=np.int64)
    best_b = np.full(len(members), -1, dtype=np.int64)

    first = neighbours[1].shape[1] if neighbours is not None else min(n, k)
    pending = {first: np.concatenate([members[pos] for pos in active])}
    while pending:
        k_round = min(pending)
        queries = pending.pop(k_round)
        last = np.empty(len(queries))
        chunk = max(1, _BLOCK_ENTRIES // k_round)
        candidates = []
        if k_round > _GPU_MAX_K:
            database, query_rows = database.cpu(), query_rows.cpu()
        for start in range(0, len(queries), chunk):
            q = queries[start : start + chunk]
            if neighbours is not None and k_round == first:
                # The table of the Jaccard step: squared distance = |a|^2 + |b|^2 - 2 a.b (= 2 - 2 a.b).
                listed = neighbours[1][q]
                screened = sq_norms[q, None] + sq_norms[listed] - 2.0 * neighbours[0][q].astype(np.float64)
            else:
                sims, listed = knn_search(database, k_round, query_rows[torch.from_numpy(q).to(query_rows.device)])
                screened = sq_norms[q, None] - sims.astype(np.float64)
            last[start : start + chunk] = screened[:, -1]
            candidates.append(_screened_candidates(q, listed, screened, labels, position, len(members), tol))
        a, b = (np.concatenate(parts) for parts in zip(*candidates))
        a = np.concatenate([a, best_a[best_a >= 0]])
        b = np.concatenate([b, best_b[best_b >= 0]])
        exact = squared_distances(features, a, b)
        cluster = position[a]
        order = np.lexsort((b, a, exact, cluster))
        _, first = np.unique(cluster[order], return_index=True)
        winners = order[first]
        best[cluster[winners]] = exact[winners]
        best_a[cluster[winners]], best_b[cluster[winners]] = a[winners], b[winners]
        # Points beyond a member's list are at least (its k-th screened distance - tol) away: the member is
        # settled once that is strictly more than its cluster's best exact distance (or the list holds all n).
        unsettled = queries[(k_round < n) & ~(last - tol > best[position[queries]])]
        # Next search size per member: at least |C| + k (some outside point must then be listed), then
        # doubling; rounded up to a power of two so that few distinct searches are run.
        grown = np.maximum(2 * k_round, sizes[position[unsettled]] + k)
        grown = np.minimum(n, 1 << np.ceil(np.log2(grown)).astype(np.int64))
        for size in np.unique(grown):
            group = unsettled[grown == size]
            pending[int(size)] = np.concatenate([pending[int(size)], group]) if int(size) in pending else group
    return {pos: (int(best_a[pos]), int(best_b[pos])) for pos in active}


def _screened_candidates(
    queries: np.ndarray,
    neighbours: np.ndarray,
    screened: np.ndarray,
    labels: np.ndarray,
    position: np.ndarray,
    num_clusters: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Outside neighbours within ``2 tol`` of their cluster's smallest screened outside distance.

    Args:
        queries: ``(m,)`` clustered points; ``neighbours``/``screened``: their ``(m, k)`` k-NN lists and
            screened squared distances; ``position``: ``(n,)`` cluster position of every point.

    Returns:
        ``(a, b)``: ``(c,)`` int64 pairs, ``a`` a query and ``b`` one of its neighbours outside its cluster.
    """
    outside = labels[neighbours] != labels[queries, None]
    outside_dist = np.where(outside, screened, np.inf)
    round_best = np.full(num_clusters, np.inf)
    np.minimum.at(round_best, position[queries], outside_dist.min(axis=1))
    rows, cols = np.nonzero(outside & (outside_dist <= round_best[position[queries], None] + 2 * tol))
    return queries[rows], neighbours[rows, cols]


def plan_support_pairs(
    labels: np.ndarray | torch.Tensor | Sequence[int],
    features: torch.Tensor | np.ndarray,
    kinds: Iterable[str] = KINDS,
    k: int = KNN_K,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[tuple[int, int, str]]:
    """The DUS candidates of SPEC section 3.3, without asking anything (pure: e.g. for an annotation UI).

    Args:
        labels: ``(n,)`` int cluster labels, ``-1`` for outliers.
        features: ``(n, d)`` float features (the instance memory; any norm). A CUDA tensor searches on the GPU
            when faiss can.
        kinds: which candidates to plan: ``"positive"``, ``"negative"`` or both.
        k: neighbours per point in the first nearest-outside search (a speed knob; the result does not depend
            on it).
        neighbours: optional ``(sims, idx)`` inner-product k-NN table ``(n, w)`` of the same features, e.g. the
            one :func:`spal.clustering.jaccard_distance` was given, so that the epoch searches once. Only for
            L2-normalised features (checked); the result does not depend on it.

    Returns:
        ``(a, b, kind)`` for every cluster in increasing id, its positive before its negative, ``a`` in the
        cluster. Trivial pairs (a size-1 cluster's positive ``(x, x)``) are left out; a cluster holding every
        point has no negative. Pairs already known are *not* filtered (that depends on the answers).
    """
    labels_np = _as_labels(labels)
    kinds = tuple(kinds)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown support pair kinds {sorted(unknown)}; choose among {KINDS}")
    n = len(labels_np)
    if not isinstance(features, (torch.Tensor, np.ndarray)) or features.ndim != 2 or features.shape[0] != n:
        raise ValueError(
            f"features must be an (n, d) = ({n}, d) tensor or array matching labels, got "
            f"{getattr(features, 'shape', type(features))}"
        )
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ids, members = _clusters(labels_np)
    if not len(ids):
        return []
    features_np = _as_numpy(features)
    dim = features_np.shape[1]
    sq_norms = np.einsum("ij,ij->i", features_np, features_np, dtype=np.float64)
    max_sq = float(sq_norms.max())
    positives: dict[int, tuple[int, int]] = {}
    if "positive" in kinds:
        device = features.device if isinstance(features, torch.Tensor) else torch.device("cpu")
        # Screen in float64: a TF32 or reduced-precision float32 matmul setting must not change the result.
        feats = torch.from_numpy(features_np).to(device, torch.float64)
        tol = _screening_tolerance(dim, max_sq, float(np.finfo(np.float64).eps) / 2)
        sq_t = torch.from_numpy(sq_norms).to(device)
        positives = dict(enumerate(_farthest_pairs(members, feats, sq_t, features_np, tol)))
    negatives: dict[int, tuple[int, int]] = {}
    if "negative" in kinds:
        tol = _screening_tolerance(dim + 1, 4.0 * max_sq, float(np.finfo(np.float32).eps) / 2)
        if neighbours is not None and not np.allclose(sq_norms, 1.0, atol=1e-3):
            raise ValueError("a precomputed k-NN table is only valid for L2-normalised features")
        negatives = _nearest_outside_pairs(
            labels_np, members, features_np, sq_norms, features, k, tol, neighbours=neighbours
        )
    plan: list[tuple[int, int, str]] = []
    for pos in range(len(members)):
        if pos in positives and positives[pos][0] != positives[pos][1]:
            plan.append((*positives[pos], "positive"))
        if pos in negatives:
            plan.append((*negatives[pos], "negative"))
    return plan


def _as_labels(labels: np.ndarray | torch.Tensor | Sequence[int]) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-d integer array (-1 for outliers), got {array.dtype} {array.shape}")
    if array.size and array.min() < -1:
        raise ValueError(f"labels must be >= -1 (-1 marks outliers), found {array.min()}")
    return array.astype(np.int64, copy=False)


def _random_pairs(
    labels: np.ndarray, constraints: ConstraintGraph, count: int, rng: np.random.Generator
) -> Iterator[tuple[int, int, str]]:
    """Up to ``count`` pairs unknown when drawn, alternately inside a cluster and across, each uniform.

    Inside: uniform over unordered pairs of distinct members of one cluster, reported ``a < b``. Across:
    uniform over unordered pairs not in one cluster with at least one point clustered, reported with ``a``
    clustered. When one kind has no unknown pair left (``_MAX_DRAWS`` consecutive misses) the other is used.
    """
    _, members = _clusters(labels)
    groups = [g for g in members if len(g) >= 2]
    weights = np.array([len(g) * (len(g) - 1) / 2 for g in groups], dtype=np.float64)
    n = len(labels)

    probabilities = weights / weights.sum() if groups else weights

    def inside() -> tuple[int, int] | None:
        if not groups:
            return None
        for _ in range(_MAX_DRAWS):
            group = groups[rng.choice(len(groups), p=probabilities)]
            i, j = sorted(rng.choice(len(group), size=2, replace=False))
            a, b = int(group[i]), int(group[j])
            if not constraints.known(a, b):
                return a, b
        return None

    def across() -> tuple[int, int] | None:
        if not groups and not (labels >= 0).any():
            return None
        for _ in range(_MAX_DRAWS):
            a, b = (int(v) for v in rng.integers(n, size=2))
            if labels[a] < 0:
                a, b = b, a
            if a == b or labels[a] < 0 or labels[a] == labels[b]:
                continue
            if not constraints.known(a, b):
                return a, b
        return None

    draws = (inside, across)
    for i in range(count):
        pair = draws[i % 2]() or draws[(i + 1) % 2]()
        if pair is None:
            log.warning(
                "random selection: no unknown pair found after %d draws; stopping at %d of %d pairs",
                _MAX_DRAWS,
                i,
                count,
            )
            return
        yield (*pair, "random")


def _ask(
    candidates: Iterable[tuple[int, int, str]],
    constraints: ConstraintGraph,
    budget: _HasRemaining,
    oracle: Oracle,
    on_pair: Callable[[int, int, str], None] | None,
) -> list[tuple[int, int, bool]]:
    asked: list[tuple[int, int, bool]] = []
    for a, b, kind in candidates:
        if budget.remaining <= 0:
            break
        if a == b or constraints.known(a, b):
            continue
        if on_pair is not None:
            on_pair(a, b, kind)
        same = bool(oracle(a, b))
        budget.remaining -= 1
        constraints.add_answer(a, b, same)
        asked.append((a, b, same))
    return asked


def select_support_pairs(
    labels: np.ndarray | torch.Tensor | Sequence[int],
    features: torch.Tensor | np.ndarray,
    constraints: ConstraintGraph,
    budget: _HasRemaining,
    oracle: Oracle,
    strategy: str = "dus",
    rng: np.random.Generator | None = None,
    on_pair: Callable[[int, int, str], None] | None = None,
    k: int = KNN_K,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[tuple[int, int, bool]]:
    """Ask the oracle about this epoch's support pairs and record the answers (SPEC section 3.3).

    Args:
        labels: ``(n,)`` int cluster labels, ``-1`` for outliers.
        features: ``(n, d)`` float features (the instance memory).
        constraints: the graph the answers go into (:meth:`ConstraintGraph.add_answer`); its ``known`` decides
            which pairs are skipped, at the moment each pair comes up.
        budget: anything with an int ``.remaining``; lowered by 1 for every question, nothing is asked at 0.
        oracle: ``oracle(a, b) -> bool``, called exactly once for every returned pair, in order
            and orientation.
        strategy: ``"dus"`` (the method), ``"positive-only"`` / ``"negative-only"`` (one half of DUS), or
            ``"random"``: as many questions as DUS would ask now (its distinct candidates unknown at the
            start, capped by the budget), drawn uniformly among unknown pairs, alternately inside clusters and
            across.
        rng: the random strategy's generator (required there, unused otherwise).
        on_pair: called as ``on_pair(a, b, kind)`` just before each question (kind ``"positive"``,
            ``"negative"`` or ``"random"``), e.g. :meth:`spal.active.LoggedOracle.note_kind`.
        k, neighbours: see :func:`plan_support_pairs`.

    Returns:
        The pairs asked, ``(a, b, same)``, in order.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r}; choose one of {STRATEGIES}")
    if strategy == "random" and rng is None:
        raise ValueError("strategy='random' needs rng=np.random.default_rng(seed) for reproducible draws")
    labels_np = _as_labels(labels)
    if len(labels_np) != constraints.n:
        raise ValueError(f"labels cover {len(labels_np)} points but the constraint graph has n={constraints.n}")
    if budget.remaining <= 0:
        return []
    if strategy == "random":
        assert rng is not None
        plan = plan_support_pairs(labels_np, features, k=k, neighbours=neighbours)
        distinct = {(min(a, b), max(a, b)) for a, b, _ in plan}
        count = min(budget.remaining, sum(not constraints.known(a, b) for a, b in distinct))
        candidates: Iterable[tuple[int, int, str]] = _random_pairs(labels_np, constraints, count, rng)
    else:
        kinds = STRATEGY_KINDS[strategy]
        candidates = plan_support_pairs(labels_np, features, kinds=kinds, k=k, neighbours=neighbours)
    asked = _ask(candidates, constraints, budget, oracle, on_pair)
    log.debug(
        "selection (%s): %d pairs (%d same, %d different); %d queries left",
        strategy,
        len(asked),
        sum(s for _, _, s in asked),
        sum(not s for _, _, s in asked),
        budget.remaining,
    )
    return asked
