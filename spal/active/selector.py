"""Who answers an epoch's support pairs: the one interface the training loop calls, and the paper's answerer.

The training loop hands each epoch's clustering to a :class:`PairSelector` and does not care who answers: the
ground-truth identities (:class:`GroundTruthSelect`, the paper's protocol) or people at the annotation station
(:class:`spal.annotation.HumanSelect`, ``--oracle human``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from spal.active.annotations import AnnotationLog
from spal.active.budget import Budget
from spal.active.constraints import ConstraintGraph
from spal.active.oracle import GroundTruthOracle, LoggedOracle
from spal.active.selection import select_support_pairs
from spal.datasets.base import Record

__all__ = ["GroundTruthSelect", "PairSelector"]

logger = logging.getLogger(__name__)


class PairSelector(Protocol):
    """Selects and answers one epoch's support pairs (SPEC section 3.3)."""

    def __call__(
        self,
        *,
        epoch: int,
        labels: np.ndarray,
        features: Any,
        constraints: ConstraintGraph,
        budget: Budget,
        log: AnnotationLog,
        records: Sequence[Record],
        neighbours: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[tuple[int, int, bool]]:
        """Ask the epoch's pairs while ``budget`` lasts.

        Args:
            epoch: the epoch number (written into the answer records).
            labels: ``(n,)`` int cluster labels, ``-1`` = outlier.
            features: ``(n, d)`` L2-normalised memory features.
            constraints: the run's graph; the answers are applied to it.
            budget: charged one query an answer.
            log: the run's answer log; every answer is appended, earlier answers of the epoch are replayed.
            records: the ``n`` train records ``(path, pid, camid)``.
            neighbours: the epoch's k-NN table ``(sims, idx)`` of ``features``, reused by the selection
                instead of a new search (``None``: search).

        Returns:
            The answered pairs ``(a, b, same)``, in order.
        """
        ...


class GroundTruthSelect:
    """``--oracle ground-truth``: :func:`spal.active.select_support_pairs` answered by the identities ``pids``.

    The oracle sits behind the answer log, so after a crash the epoch's earlier answers are replayed, not
    asked again. Its answers are fsynced once an epoch (``log.sync()`` after the selection, before training),
    not one by one: an answer lost in a crash before that was never used, and the identities give it again.

    Args:
        pids: ``(n,)`` the train identities.
        strategy: the selection strategy (``--selection``).
        seed: the run's seed; epoch ``e`` draws with ``seed * 7919 + e``.
    """

    def __init__(self, pids: np.ndarray, strategy: str, seed: int) -> None:
        self.pids = pids
        self.strategy = strategy
        self.seed = seed

    def __call__(
        self,
        *,
        epoch: int,
        labels: np.ndarray,
        features: Any,
        constraints: ConstraintGraph,
        budget: Budget,
        log: AnnotationLog,
        records: Sequence[Record],
        neighbours: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[tuple[int, int, bool]]:
        """Select and answer the epoch's pairs (arguments as :meth:`PairSelector.__call__`)."""
        oracle = LoggedOracle(
            GroundTruthOracle(self.pids),
            log,
            epoch=epoch,
            paths=[r[0] for r in records],
            annotator="ground-truth",
            sync_each=False,
        )
        rng = np.random.default_rng(self.seed * 7919 + epoch)
        pairs = select_support_pairs(
            labels,
            features,
            constraints,
            budget,
            oracle,
            strategy=self.strategy,
            rng=rng,
            on_pair=oracle.note_kind,
            neighbours=neighbours,
        )
        log.sync()
        # After a crash the epoch's earlier answers come from the log: say so, they were not asked again.
        replayed = f", replayed {oracle.num_replayed} answers from the log" if oracle.num_replayed else ""
        logger.info(
            "selection (%s): asked %d pairs%s (%d same, %d different); %d queries left",
            self.strategy,
            oracle.num_asked,
            replayed,
            sum(same for _, _, same in pairs),
            sum(not same for _, _, same in pairs),
            budget.remaining,
        )
        return pairs
