"""constrained_dbscan: sklearn without constraints, SPEC 3.2 literally with them."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import DBSCAN

from spal.clustering import constrained_dbscan


class FakeConstraints:
    """The three methods constrained_dbscan reads from spal.active.ConstraintGraph, over fixed answers."""

    def __init__(self, n: int, must: list[tuple[int, int]] = (), cannot: list[tuple[int, int]] = ()) -> None:
        self.n = n
        parent = list(range(n))

        def root(a: int) -> int:
            while parent[a] != a:
                a = parent[a]
            return a

        for a, b in must:
            ra, rb = root(a), root(b)
            parent[max(ra, rb)] = min(ra, rb)
        self._comp = np.array([root(a) for a in range(n)], dtype=np.int64)  # smallest member is the root
        pairs = {tuple(sorted((int(self._comp[a]), int(self._comp[b])))) for a, b in cannot}
        assert all(a != b for a, b in pairs), "a cannot-link inside a must-link component"
        self._cannot = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)

    def component_ids(self) -> np.ndarray:
        return self._comp.copy()

    def cannot_link_edges(self) -> np.ndarray:
        return self._cannot[:, ::-1].copy()  # either orientation is allowed

    def has_constraints(self) -> bool:
        return bool(len(self._cannot)) or bool((self._comp != np.arange(self.n)).any())


def literal_spec(dense: np.ndarray, eps: float, min_samples: int, graph: FakeConstraints | None) -> np.ndarray:
    """SPEC 3.2's pseudo-code as written, with the authors' scan of the cluster for the cannot-link test."""
    n = len(dense)
    comp = graph.component_ids() if graph else np.arange(n)
    cl = {tuple(e) for e in graph.cannot_link_edges().tolist()} if graph else set()
    cl |= {(b, a) for a, b in cl}

    def partners(p: int) -> list[int]:
        return [m for m in range(n) if comp[m] == comp[p] and m != p]

    def cannot(q: int) -> list[int]:
        return [x for x in range(n) if (comp[x], comp[q]) in cl]

    neighbours = [[j for j in range(n) if dense[p, j] <= eps or j == p] for p in range(n)]
    core = [len(nb) >= min_samples for nb in neighbours]
    label = [-1] * n
    cid = 0
    for p in range(n):
        if label[p] != -1 or not core[p]:
            continue
        queue = deque()
        for m in partners(p):
            if label[m] == -1:
                label[m] = cid
                queue.append(m)
        label[p] = cid
        queue.append(p)
        while queue:
            s = queue.popleft()
            for m in partners(s):
                if label[m] == -1:
                    label[m] = cid
                    queue.append(m)
            if core[s]:
                for q in neighbours[s]:
                    if label[q] == -1 and not any(label[x] == cid for x in cannot(q)):
                        label[q] = cid
                        queue.append(q)
        cid += 1
    return np.array(label, dtype=np.int64)


def random_distances(n: int, density: float, rng: np.random.Generator) -> sp.csr_matrix:
    """Symmetric sparse distances in [0, 1) with an explicit zero diagonal; values drawn from a small grid so
    that eps often equals a stored distance."""
    mask = np.triu(rng.random((n, n)) < density, 1)
    values = np.where(mask, rng.integers(1, 20, (n, n)) / 20, 0.0).astype(np.float32)
    full = values + values.T
    rows, cols = np.nonzero(mask | mask.T)
    diag = np.arange(n)
    return sp.csr_matrix(
        (
            np.concatenate([full[rows, cols], np.zeros(n, np.float32)]),
            (np.concatenate([rows, diag]), np.concatenate([cols, diag])),
        ),
        shape=(n, n),
    )


def as_dense(distances: sp.csr_matrix) -> np.ndarray:
    out = np.ones(distances.shape, dtype=np.float32)
    coo = distances.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


def random_constraints(n: int, rng: np.random.Generator) -> FakeConstraints:
    must = [tuple(rng.choice(n, 2, replace=False)) for _ in range(rng.integers(0, n // 3))]
    graph = FakeConstraints(n, must)
    comp = graph.component_ids()
    cannot = []
    for _ in range(rng.integers(0, n)):
        a, b = rng.choice(n, 2, replace=False)
        if comp[a] != comp[b]:
            cannot.append((int(a), int(b)))
    return FakeConstraints(n, must, cannot)


@pytest.mark.parametrize("seed", range(40))
def test_equals_sklearn_without_constraints(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    distances = random_distances(n, density=float(rng.uniform(0.02, 0.3)), rng=rng)
    dense = as_dense(distances)
    stored = distances.data[distances.data > 0]
    eps_choices = [0.3, 0.55] + ([float(rng.choice(stored))] if stored.size else [])
    for eps in eps_choices:
        for min_samples in range(1, 6):
            ours = constrained_dbscan(distances, eps=eps, min_samples=min_samples)
            theirs = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(dense)
            assert ours.dtype == np.int64
            np.testing.assert_array_equal(ours, theirs)


def test_eps_equal_to_a_distance_counts_as_neighbour() -> None:
    d = sp.csr_matrix(np.array([[0, 0.4, 0.7], [0.4, 0, 0.7], [0.7, 0.7, 0]], dtype=np.float32))
    d.setdiag(0)  # keep the zero diagonal stored
    assert constrained_dbscan(d, eps=0.4, min_samples=2).tolist() == [0, 0, -1]
    assert constrained_dbscan(d, eps=np.float32(0.7).item(), min_samples=3).tolist() == [0, 0, 0]
    assert constrained_dbscan(d, eps=0.399, min_samples=2).tolist() == [-1, -1, -1]


def test_missing_diagonal_still_counts_the_point_itself() -> None:
    d = sp.csr_matrix(([0.2, 0.2], ([0, 1], [1, 0])), shape=(3, 3))
    assert constrained_dbscan(d, eps=0.5, min_samples=2).tolist() == [0, 0, -1]
    assert constrained_dbscan(d, eps=0.5, min_samples=1).tolist() == [0, 0, 1]


@pytest.mark.parametrize("seed", range(100))
def test_equals_literal_spec_with_random_constraints(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(2, 70))
    distances = random_distances(n, density=float(rng.uniform(0.05, 0.4)), rng=rng)
    graph = random_constraints(n, rng)
    eps, min_samples = float(rng.choice([0.3, 0.5, 0.7])), int(rng.integers(1, 6))
    expected = literal_spec(as_dense(distances), eps, min_samples, graph)
    np.testing.assert_array_equal(constrained_dbscan(distances, eps, min_samples, graph), expected)


def chain(n: int, close: list[tuple[int, int]]) -> sp.csr_matrix:
    """Distances 0.1 on the listed pairs (both ways), 1 elsewhere, zero diagonal."""
    rows = [a for a, b in close] + [b for a, b in close] + list(range(n))
    cols = [b for a, b in close] + [a for a, b in close] + list(range(n))
    data = [0.1] * (2 * len(close)) + [0.0] * n
    return sp.csr_matrix((np.array(data, np.float32), (rows, cols)), shape=(n, n))


def clique(points: list[int]) -> list[tuple[int, int]]:
    return [(a, b) for i, a in enumerate(points) for b in points[i + 1 :]]


def test_must_link_pulls_a_far_point_without_density_check() -> None:
    # 0..3 a dense group; 4 is isolated (not core, no neighbour) but must-links 2.
    d = chain(6, clique([0, 1, 2, 3]))
    assert constrained_dbscan(d, 0.5, 3).tolist() == [0, 0, 0, 0, -1, -1]
    assert constrained_dbscan(d, 0.5, 3, FakeConstraints(6, must=[(2, 4)])).tolist() == [0, 0, 0, 0, 0, -1]


def test_component_cannot_links_hold_once_it_joined() -> None:
    # 0-1, 0-2, 2-3 close; 4 isolated, must-links 1 and cannot-links 3. Seed 0 admits 1 and 2, 1 pulls 4,
    # and 2 may not admit 3 (its cannot-link partner 4 is in the cluster): 3 seeds its own cluster.
    d = chain(5, [(0, 1), (0, 2), (2, 3)])
    assert constrained_dbscan(d, 0.5, 2).tolist() == [0, 0, 0, 0, -1]
    graph = FakeConstraints(5, must=[(1, 4)], cannot=[(4, 3)])
    assert constrained_dbscan(d, 0.5, 2, graph).tolist() == [0, 0, 0, 1, 0]


def test_cannot_link_blocks_a_neighbour() -> None:
    # 0..3 dense; 4 is near 3 only (border). A cannot-link 4-1 keeps it out; it is not core: outlier.
    d = chain(5, clique([0, 1, 2, 3]) + [(3, 4)])
    assert constrained_dbscan(d, 0.5, 3).tolist() == [0, 0, 0, 0, 0]
    graph = FakeConstraints(5, cannot=[(4, 1)])
    assert constrained_dbscan(d, 0.5, 3, graph).tolist() == [0, 0, 0, 0, -1]


def test_propagated_cannot_link_blocks_through_the_component() -> None:
    # 5 must-links 6 (far away); 6 cannot-links 4: 5 may not join the cluster holding 4.
    d = chain(7, clique([0, 1, 2, 3, 4]) + [(4, 5)])
    graph = FakeConstraints(7, must=[(5, 6)], cannot=[(6, 4)])
    assert constrained_dbscan(d, 0.5, 3, graph).tolist() == [0, 0, 0, 0, 0, -1, -1]


def test_core_point_cannot_linking_every_neighbour_cluster_starts_its_own() -> None:
    # Groups 0..2 and 3..5; 6 is core (near 0, 1, 3, 4) but cannot-links 0 and 5. Seed 0 refuses it; seed 3
    # admits 4 and 5 before reaching 6, which 5 now forbids; 6 then seeds a cluster of its own.
    d = chain(7, clique([0, 1, 2]) + clique([3, 4, 5]) + [(6, 0), (6, 1), (6, 3), (6, 4)])
    graph = FakeConstraints(7, cannot=[(6, 0), (6, 5)])
    assert constrained_dbscan(d, 0.5, 3, graph).tolist() == [0, 0, 0, 1, 1, 1, 2]
    # Without the constraints it bridges the two groups.
    assert constrained_dbscan(d, 0.5, 3).tolist() == [0] * 7


def test_non_core_point_never_seeds_and_outliers_stay() -> None:
    # 0-1 close, 2 alone: with min_samples 3 nobody is core.
    d = chain(3, [(0, 1)])
    graph = FakeConstraints(3, must=[(1, 2)])
    assert constrained_dbscan(d, 0.5, 3, graph).tolist() == [-1, -1, -1]
    # 4 (near 3 and 5) is a border point: it joins, pulls its partner 6, but does not expand to 5.
    d = chain(7, clique([0, 1, 2, 3]) + [(3, 4), (4, 5)])
    graph = FakeConstraints(7, must=[(4, 6)])
    assert constrained_dbscan(d, 0.5, 4, graph).tolist() == [0, 0, 0, 0, 0, -1, 0]


def test_order_decides_under_cannot_link() -> None:
    # 0..3 all close, 1 cannot-links 2: seed 0 takes 1 first (increasing index), so 2 is refused and later
    # seeds its own cluster. Relabelling the points changes who wins.
    d = chain(4, clique([0, 1, 2, 3]))
    assert constrained_dbscan(d, 0.5, 2, FakeConstraints(4, cannot=[(1, 2)])).tolist() == [0, 0, 1, 0]
    assert constrained_dbscan(d, 0.5, 2, FakeConstraints(4, cannot=[(2, 3)])).tolist() == [0, 0, 0, 1]
    # Partners of the seed enter before the seed's neighbours: 0 must-links 3, so 3 beats 1 to the cluster.
    graph = FakeConstraints(4, must=[(0, 3)], cannot=[(1, 3)])
    assert constrained_dbscan(d, 0.5, 2, graph).tolist() == [0, 1, 0, 0]


def test_graph_with_no_constraints_equals_plain() -> None:
    rng = np.random.default_rng(5)
    d = random_distances(80, 0.2, rng)
    assert np.array_equal(constrained_dbscan(d, 0.5, 3, FakeConstraints(80)), constrained_dbscan(d, 0.5, 3))


def test_bad_arguments_are_refused() -> None:
    d = chain(3, [(0, 1)])
    with pytest.raises(TypeError, match="sparse"):
        constrained_dbscan(d.toarray())
    with pytest.raises(ValueError, match="eps"):
        constrained_dbscan(d, eps=1.0)
    with pytest.raises(ValueError, match="min_samples"):
        constrained_dbscan(d, min_samples=0)
    with pytest.raises(ValueError, match="same n"):
        constrained_dbscan(d, constraints=FakeConstraints(4))
