"""The constraint graph of SPEC section 3.4: must-link components and cannot-link edges between them.

Must-link (ML) is an equivalence relation, kept as a union-find forest (path halving, union by size).
Cannot-link (CL) is stored between components, not points: every component's CL neighbours live in a set keyed
by a *CL key* (an id owned by the component's root). When two components merge, the smaller CL set is moved
into the larger one (small-into-large), so each CL edge end moves O(log E) times over a whole run and adding
an answer or asking ``relation`` stays near-constant time however many answers are known (the authors'
per-answer bookkeeping grew with the graph). The CL key is separate from the union-find root because the root
is chosen by component size while the surviving CL set must be chosen by CL-set size.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["ConstraintGraph"]

log = logging.getLogger(__name__)

_STATE_VERSION = 1


class ConstraintGraph:
    """Must-link components and cannot-link edges over ``n`` points, with their transitive consequences.

    A pair is *known* when both points are in one ML component (relation 1) or their components cannot-link
    (relation -1). An answer that contradicts what is known (a must-link between cannot-linked components, a
    cannot-link inside one component) is refused: the method returns ``False``, nothing changes, the pair is
    appended to :attr:`contradictions` as ``(a, b, same)`` and a warning is logged (a human oracle can err;
    the earlier answer is kept).

    Args:
        n: number of points (indices ``0 .. n-1``).
        propagation: ``False`` is the ablation without label propagation: :meth:`relation`, :meth:`known` and
            :meth:`pairs_known` then know only the answered pairs themselves. The ML components and CL edges
            are still maintained as usual (the clustering and the support-pair loss read them through
            :meth:`component_ids`, :meth:`cannot_link_edges` and :meth:`members`), and contradictions are
            still judged against them.

    Attributes:
        n: number of points.
        propagation: whether relations are propagated.
        contradictions: refused answers ``(a, b, same)`` in the order they came.
        num_must_links_answered / num_cannot_links_answered: accepted answers of each kind (redundant ones
            included, the refused ones not).
    """

    def __init__(self, n: int, propagation: bool = True) -> None:
        if int(n) < 0:
            raise ValueError(f"ConstraintGraph needs n >= 0 points, got n={n}")
        self.n = int(n)
        self.propagation = bool(propagation)
        self.contradictions: list[tuple[int, int, bool]] = []
        self.num_must_links_answered = 0
        self.num_cannot_links_answered = 0
        self._answers: list[tuple[int, int, bool]] = []
        # Union-find over points; _size, _min, _members and _key are meaningful at roots only.
        self._parent = list(range(self.n))
        self._size = [1] * self.n
        self._min = list(range(self.n))
        self._members: list[list[int] | None] = [[i] for i in range(self.n)]
        self._key = list(range(self.n))
        # CL key -> set of CL keys it cannot-link; CL key -> the root that owns it.
        self._cl: dict[int, set[int]] = {}
        self._key_root = list(range(self.n))
        # Answered unordered pairs (a < b) -> same; what relation() reads without propagation.
        self._answered: dict[tuple[int, int], bool] = {}
        self._same_pairs = 0
        self._diff_pairs: int | None = 0  # None: stale, recomputed on the next read of pairs_known()
        self._ml_version = 0
        self._ids_cache: tuple[int, np.ndarray] | None = None

    # ------------------------------------------------------------------ queries
    def relation(self, a: int, b: int) -> int:
        """``1`` same, ``-1`` different, ``0`` unknown; propagation included unless it is switched off.

        ``relation(a, a)`` is ``1``.
        """
        a, b = self._check(a), self._check(b)
        if a == b:
            return 1
        if not self.propagation:
            answer = self._answered.get((a, b) if a < b else (b, a))
            return 0 if answer is None else (1 if answer else -1)
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return 1
        return -1 if self._cannot_link_roots(ra, rb) else 0

    def known(self, a: int, b: int) -> bool:
        """Whether ``relation(a, b) != 0``."""
        return self.relation(a, b) != 0

    def has_constraints(self) -> bool:
        """Whether any answer has been accepted (so some component has two points or some CL edge exists)."""
        return bool(self._answers)

    def members(self, i: int) -> list[int]:
        """The sorted members of ``i``'s ML component (``i`` included)."""
        members = self._members[self._find(self._check(i))]
        assert members is not None
        return sorted(members)

    def component_ids(self) -> np.ndarray:
        """Canonical ML component of every point: ``(n,)`` int64, the smallest index in the component."""
        if self._ids_cache is None or self._ids_cache[0] != self._ml_version:
            parent = np.asarray(self._parent, dtype=np.int64)
            # Pointer jumping: every point reaches its root in O(log depth) vectorised rounds.
            while True:
                grand = parent[parent]
                if np.array_equal(grand, parent):
                    break
                parent = grand
            ids = np.asarray(self._min, dtype=np.int64)[parent] if self.n else np.zeros(0, np.int64)
            self._ids_cache = (self._ml_version, ids)
        return self._ids_cache[1].copy()

    def cannot_link_edges(self) -> np.ndarray:
        """Cannot-linked component pairs: ``(E, 2)`` int64 of canonical ids (see :meth:`component_ids`).

        Each unordered pair appears once as ``(smaller id, larger id)``; rows are sorted lexicographically.
        """
        rows = []
        for key, neighbours in self._cl.items():
            own = self._min[self._key_root[key]]
            for other_key in neighbours:
                other = self._min[self._key_root[other_key]]
                if own < other:
                    rows.append((own, other))
        if not rows:
            return np.zeros((0, 2), dtype=np.int64)
        edges = np.asarray(rows, dtype=np.int64)
        return edges[np.lexsort((edges[:, 1], edges[:, 0]))]

    def pairs_known(self) -> int:
        """Number of unordered pairs ``a < b`` whose relation is known.

        With propagation: ``sum_C |C|(|C|-1)/2 + sum over CL component pairs |A||B|``. The must-link part is
        kept up to date at every merge; the cannot-link part is cached and recomputed in O(number of CL
        component edges) on the first read after a change (a merge changes it by the sizes of all CL
        neighbours of both sides, which would break the small-into-large bound of adding an answer). Without
        propagation: the number of distinct answered pairs.
        """
        if not self.propagation:
            return len(self._answered)
        if self._diff_pairs is None:
            total = 0
            for key, neighbours in self._cl.items():
                size = self._size[self._key_root[key]]
                total += size * sum(self._size[self._key_root[other]] for other in neighbours)
            self._diff_pairs = total // 2
        return self._same_pairs + self._diff_pairs

    def answers(self) -> list[tuple[int, int, bool]]:
        """The accepted answers ``(a, b, same)`` in the order they were given."""
        return list(self._answers)

    # ------------------------------------------------------------------ updates
    def add_answer(self, a: int, b: int, same: bool) -> bool:
        """Record an oracle answer: :meth:`add_must_link` when ``same`` else :meth:`add_cannot_link`."""
        return self.add_must_link(a, b) if same else self.add_cannot_link(a, b)

    def add_must_link(self, a: int, b: int) -> bool:
        """Record that ``a`` and ``b`` are the same identity; ``False`` (nothing changes) on a contradiction.

        ``add_must_link(a, a)`` is accepted and records nothing.
        """
        a, b = self._check(a), self._check(b)
        if a == b:
            return True
        ra, rb = self._find(a), self._find(b)
        if ra != rb and self._cannot_link_roots(ra, rb):
            self._refuse(a, b, True, "must-link between cannot-linked components")
            return False
        self._record(a, b, True)
        if ra != rb:
            self._union(ra, rb)
        return True

    def add_cannot_link(self, a: int, b: int) -> bool:
        """Record that ``a`` and ``b`` are different people; ``False`` (no change) on a contradiction."""
        a, b = self._check(a), self._check(b)
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            self._refuse(a, b, False, "cannot-link inside one must-link component")
            return False
        self._record(a, b, False)
        ka, kb = self._key[ra], self._key[rb]
        neighbours = self._cl.setdefault(ka, set())
        if kb not in neighbours:
            neighbours.add(kb)
            self._cl.setdefault(kb, set()).add(ka)
            if self._diff_pairs is not None:
                self._diff_pairs += self._size[ra] * self._size[rb]
        return True

    # ------------------------------------------------------------------ serialisation
    def state_dict(self) -> dict[str, Any]:
        """A JSON-friendly state: ``n``, ``propagation``, the accepted answers and the contradictions."""
        return {
            "version": _STATE_VERSION,
            "n": self.n,
            "propagation": self.propagation,
            "answers": [[a, b, same] for a, b, same in self._answers],
            "contradictions": [[a, b, same] for a, b, same in self.contradictions],
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ConstraintGraph:
        """Rebuild a graph from :meth:`state_dict` by replaying its accepted answers in order."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"unsupported ConstraintGraph state version {state.get('version')!r} (expected "
                f"{_STATE_VERSION}); was it written by another version of spal?"
            )
        graph = cls(int(state["n"]), propagation=bool(state["propagation"]))
        for a, b, same in state["answers"]:
            if not graph.add_answer(int(a), int(b), bool(same)):
                raise ValueError(
                    f"corrupt ConstraintGraph state: stored answer ({a}, {b}, same={same}) contradicts the "
                    "answers before it; the checkpoint cannot be resumed"
                )
        graph.contradictions = [(int(a), int(b), bool(same)) for a, b, same in state["contradictions"]]
        return graph

    # ------------------------------------------------------------------ internals
    def _check(self, i: int) -> int:
        j = int(i)
        if not 0 <= j < self.n:
            raise IndexError(f"point index {i} is out of range for a ConstraintGraph of n={self.n} points")
        return j

    def _find(self, x: int) -> int:
        parent = self._parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def _cannot_link_roots(self, ra: int, rb: int) -> bool:
        neighbours = self._cl.get(self._key[ra])
        return neighbours is not None and self._key[rb] in neighbours

    def _refuse(self, a: int, b: int, same: bool, why: str) -> None:
        self.contradictions.append((a, b, same))
        log.warning("contradictory answer (%d, %d, same=%s) refused: %s; the earlier answers stand", a, b, same, why)

    def _record(self, a: int, b: int, same: bool) -> None:
        self._answers.append((a, b, same))
        self._answered[(a, b) if a < b else (b, a)] = same
        if same:
            self.num_must_links_answered += 1
        else:
            self.num_cannot_links_answered += 1

    def _union(self, ra: int, rb: int) -> None:
        if self._size[ra] < self._size[rb]:
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._same_pairs += self._size[ra] * self._size[rb]
        self._size[ra] += self._size[rb]
        self._min[ra] = min(self._min[ra], self._min[rb])
        big, small = self._members[ra], self._members[rb]
        assert big is not None and small is not None
        big.extend(small)
        self._members[rb] = None
        self._ml_version += 1

        ka, kb = self._key[ra], self._key[rb]
        set_a, set_b = self._cl.get(ka), self._cl.get(kb)
        if not set_a and not set_b:
            return
        self._diff_pairs = None
        if not set_a or (set_b and len(set_a) < len(set_b)):
            # Keep the larger CL set (small-into-large); the merged component takes over its key.
            ka, kb, set_a, set_b = kb, ka, set_b, set_a
            self._key[ra] = ka
            self._key_root[ka] = ra
        if not set_b:
            return
        assert set_a is not None
        for other in set_b:
            redirected = self._cl[other]
            redirected.discard(kb)
            redirected.add(ka)
            set_a.add(other)
        del self._cl[kb]
