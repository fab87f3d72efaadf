"""DBSCAN over a sparse distance matrix, with must-link / cannot-link constraints (SPEC section 3.2).

Without constraints the result equals scikit-learn's ``DBSCAN(eps, min_samples, metric="precomputed")``
on the dense matrix (absent entries = distance 1), cluster numbers included: both number clusters in the
order of their lowest-index core point, and the cluster of a border point is decided by the first cluster
that reaches it, whatever the traversal order inside a cluster.

With constraints, the order of SPEC 3.2 matters and is followed exactly: seeds in increasing index, ML
partners first, then the seed, then a FIFO queue; a popped point pulls its ML partners unchecked and, if it
is core, adds its unlabelled neighbours (increasing index) unless one of their cannot-link partners is
already in the cluster.

The cannot-link test is a lookup, not a scan of the cluster: every ML component that enters the current
cluster marks the components it cannot-link as forbidden, and a candidate is refused iff its own component
is marked. Each component is marked once, so the whole run is linear in the number of neighbour and
constraint edges.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp

__all__ = ["ConstraintSource", "constrained_dbscan", "eps_neighbourhoods"]


class ConstraintSource(Protocol):
    """What :func:`constrained_dbscan` reads from a constraint graph (``spal.active.ConstraintGraph``)."""

    n: int

    def component_ids(self) -> np.ndarray:
        """``(n,)`` int64 ML-component id of each point, in ``[0, n)``."""
        ...

    def cannot_link_edges(self) -> np.ndarray:
        """``(E, 2)`` int64 unordered pairs of component ids that cannot-link, each pair once."""
        ...

    def has_constraints(self) -> bool:
        """Whether any must-link or cannot-link is known."""
        ...


def eps_neighbourhoods(distances: sp.spmatrix | sp.sparray, eps: float) -> sp.csr_matrix:
    """The eps-neighbourhood graph of a sparse distance matrix.

    Args:
        distances: ``(n, n)`` sparse distances; an absent entry means distance 1.
        eps: radius; a stored entry with ``d <= eps`` is a neighbour. Every point is its own neighbour
            (distance 0 to itself), whether or not the diagonal is stored.

    Returns:
        ``(n, n)`` CSR pattern (data all 1) with sorted indices: row ``p`` lists the neighbours of ``p`` in
        increasing index, ``p`` itself included.
    """
    dist = sp.csr_matrix(distances)
    if not dist.has_canonical_format:
        # Duplicate entries mean their sum in scipy; work on a copy so the caller's matrix stays as it is.
        dist = dist.copy()
        dist.sum_duplicates()
    n = dist.shape[0]
    rows = np.repeat(np.arange(n), np.diff(dist.indptr))
    keep = (dist.data <= eps) & (dist.indices != rows)
    near = sp.csr_matrix((np.ones(int(keep.sum())), (rows[keep], dist.indices[keep])), shape=(n, n))
    graph = (near + sp.identity(n, format="csr")).tocsr()
    graph.sum_duplicates()
    graph.sort_indices()
    return graph


def _validate(distances: sp.spmatrix | sp.sparray, eps: float, min_samples: int) -> None:
    if not sp.issparse(distances):
        raise TypeError(
            "distances must be a scipy sparse matrix (absent entry = distance 1), e.g. jaccard_distance()'s "
            f"output; got {type(distances).__name__}. Wrap a dense array with scipy.sparse.csr_matrix."
        )
    if distances.ndim != 2 or distances.shape[0] != distances.shape[1]:
        raise ValueError(f"distances must be a square (n, n) matrix, got shape {distances.shape}")
    if not 0.0 <= eps < 1.0:
        raise ValueError(
            f"eps must lie in [0, 1) (got {eps}): absent entries stand for distance 1, so eps >= 1 would "
            "make every pair a neighbour; the paper uses eps = 0.6"
        )
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1 (got {min_samples}); the paper uses 4")


def _constraint_tables(
    constraints: ConstraintSource, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flatten a constraint graph into arrays, once per call.

    Returns:
        ``(comp, member_ptr, members, cl_ptr, cl_comps)``: ``comp (n,)`` component id of each point;
        ``members[member_ptr[c]:member_ptr[c + 1]]`` the points of component ``c`` in increasing index;
        ``cl_comps[cl_ptr[c]:cl_ptr[c + 1]]`` the components that cannot-link ``c``.
    """
    comp = np.asarray(constraints.component_ids(), dtype=np.int64)
    if comp.shape != (n,) or (n and (comp.min() < 0 or comp.max() >= n)):
        raise ValueError("component_ids() must return n ids in [0, n); the constraint graph is inconsistent")
    members = np.argsort(comp, kind="stable")
    member_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(comp, minlength=n), out=member_ptr[1:])
    edges = np.asarray(constraints.cannot_link_edges(), dtype=np.int64).reshape(-1, 2)
    both = np.concatenate([edges, edges[:, ::-1]])
    adjacency = sp.csr_matrix((np.ones(len(both)), (both[:, 0], both[:, 1])), shape=(n, n))
    adjacency.sum_duplicates()
    return comp, member_ptr, members, adjacency.indptr.astype(np.int64), adjacency.indices.astype(np.int64)


def constrained_dbscan(
    distances: sp.spmatrix | sp.sparray,
    eps: float = 0.6,
    min_samples: int = 4,
    constraints: ConstraintSource | None = None,
) -> np.ndarray:
    """Cluster with DBSCAN, honouring must-links and cannot-links in the order of SPEC 3.2.

    Args:
        distances: ``(n, n)`` sparse distances (``jaccard_distance``'s CSR); absent = 1.
        eps: neighbourhood radius, ``d <= eps``, in ``[0, 1)``.
        min_samples: a core point has at least this many neighbours, itself included.
        constraints: a ``ConstraintGraph`` over the same ``n`` points (see :class:`ConstraintSource`), or
            ``None`` for plain DBSCAN.

    Returns:
        ``(n,)`` int64 labels: clusters ``0 .. C - 1`` in order of discovery, ``-1`` for outliers.
    """
    _validate(distances, eps, min_samples)
    n = distances.shape[0]
    if constraints is not None and constraints.n != n:
        raise ValueError(
            f"the constraint graph is over {constraints.n} points but distances are {n} x {n}: build the "
            "ConstraintGraph with the same n as the features that were clustered"
        )
    graph = eps_neighbourhoods(distances, eps)
    indptr, indices = graph.indptr, graph.indices.astype(np.int64)
    core = np.diff(indptr) >= min_samples
    if constraints is None or not constraints.has_constraints():
        return _plain_dbscan(indptr, indices, core)
    return _constrained(indptr, indices, core, *_constraint_tables(constraints, n))


def _plain_dbscan(indptr: np.ndarray, indices: np.ndarray, core: np.ndarray) -> np.ndarray:
    """SPEC 3.2 with no constraints: breadth-first growth, one vectorised step per popped core point."""
    labels = np.full(core.size, -1, dtype=np.int64)
    cid = 0
    for seed in np.flatnonzero(core).tolist():
        if labels[seed] != -1:
            continue
        labels[seed] = cid
        queue, head = [seed], 0
        while head < len(queue):
            s = queue[head]
            head += 1
            if not core[s]:
                continue
            near = indices[indptr[s] : indptr[s + 1]]
            fresh = near[labels[near] == -1]
            labels[fresh] = cid
            queue.extend(fresh.tolist())
        cid += 1
    return labels


def _constrained(
    indptr: np.ndarray,
    indices: np.ndarray,
    core: np.ndarray,
    comp: np.ndarray,
    member_ptr: np.ndarray,
    members: np.ndarray,
    cl_ptr: np.ndarray,
    cl_comps: np.ndarray,
) -> np.ndarray:
    """SPEC 3.2 with constraints.

    Bookkeeping: a component always ends up whole in one cluster (the first member to be popped pulls the
    others) or whole among the outliers, so "some point that cannot-links q is in the cluster" is "the
    component of q cannot-links a component that has joined the cluster". ``forbidden`` marks the
    cannot-link partners of the joined components; a component marks them once, when it joins, and the marks
    are cleared when the cluster is complete.
    """
    n = core.size
    labels = np.full(n, -1, dtype=np.int64)
    comp_size = np.diff(member_ptr)
    has_cl = np.diff(cl_ptr) > 0
    joined = np.zeros(n, dtype=bool)
    forbidden = np.zeros(n, dtype=bool)
    cid = 0
    for seed in np.flatnonzero(core).tolist():
        if labels[seed] != -1:
            continue
        c = comp[seed]
        group = members[member_ptr[c] : member_ptr[c + 1]]
        # ML partners first (increasing index), then the seed; none of them is labelled yet.
        queue = [m for m in group.tolist() if m != seed] + [seed]
        labels[queue] = cid
        marked = [_join(c, joined, forbidden, cl_ptr, cl_comps)] if has_cl[c] else []
        head = 0
        while head < len(queue):
            s = queue[head]
            head += 1
            c = comp[s]
            if comp_size[c] > 1:
                group = members[member_ptr[c] : member_ptr[c + 1]]
                pulled = group[labels[group] == -1]  # no density or cannot-link check for pulled partners
                labels[pulled] = cid
                queue.extend(pulled.tolist())
            if not core[s]:
                continue
            near = indices[indptr[s] : indptr[s + 1]]
            fresh = near[labels[near] == -1]
            fresh = fresh[~forbidden[comp[fresh]]]
            if not has_cl[comp[fresh]].any():
                # None of them can forbid another: admit them all at once.
                labels[fresh] = cid
                queue.extend(fresh.tolist())
                continue
            # Admitting one candidate can forbid a later one: go one by one, in increasing index.
            for q in fresh.tolist():
                c = comp[q]
                if forbidden[c]:
                    continue
                labels[q] = cid
                queue.append(q)
                if has_cl[c] and not joined[c]:
                    marked.append(_join(c, joined, forbidden, cl_ptr, cl_comps))
        for partners in marked:
            forbidden[partners] = False
        cid += 1
    return labels


def _join(c: int, joined: np.ndarray, forbidden: np.ndarray, cl_ptr: np.ndarray, cl_comps: np.ndarray) -> np.ndarray:
    """Record that component ``c`` joined the current cluster; returns the components it marked forbidden."""
    joined[c] = True
    partners = cl_comps[cl_ptr[c] : cl_ptr[c + 1]]
    forbidden[partners] = True
    return partners
