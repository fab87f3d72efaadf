"""PK sampling: every batch holds P pseudo-identities with K images each (16 x 4 = 64 in the paper).

Every rank builds the same global batch from ``(seed, epoch)`` and takes its share of identities, so the
global batch keeps ``batch_size`` images whatever the number of processes (as the authors' 4-GPU
DataParallel).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["PKSampler"]

log = logging.getLogger(__name__)


class PKSampler(Sampler[list[int]]):
    """Identity-balanced batches of indices into the training set.

    For each of ``num_iterations`` iterations: ``P = batch_size // num_instances`` distinct pseudo-identities
    are drawn uniformly (with replacement only when fewer than ``P`` identities exist; a warning is logged
    once), then ``K = num_instances`` images of each: without replacement when the identity has at least ``K``
    images, with replacement otherwise (a singleton class, e.g. an outlier, repeats its image ``K`` times).
    The global batch lists the identities in draw order, ``K`` consecutive indices each; rank ``r`` of
    ``world_size`` receives identities ``[r * P / world_size, (r + 1) * P / world_size)`` of it.

    Everything is a function of ``(seed, epoch)``: call ``set_epoch(e)`` before iterating an epoch.

    Args:
        labels: ``(n,)`` non-negative int pseudo labels, one per training image (outliers as singleton
            classes).
        num_instances: ``K``.
        batch_size: global batch size, a multiple of ``K``, with ``P`` a multiple of ``world_size``.
        num_iterations: batches per epoch.
        seed: base seed.
        rank, world_size: this process's share of the global batch.

    Iterating yields ``num_iterations`` lists of ``batch_size // world_size`` ints (usable as a DataLoader
    ``batch_sampler``); ``batches()`` yields the same as ``(batch_size // world_size,)`` int64 arrays.
    """

    def __init__(
        self,
        labels: np.ndarray,
        num_instances: int = 4,
        batch_size: int = 64,
        num_iterations: int = 400,
        seed: int = 1,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels must be a non-empty 1-d int array, got shape {labels.shape} {labels.dtype}"
            )
        if labels.min() < 0:
            raise ValueError("labels must be >= 0: give every outlier its own class before sampling")
        if num_instances < 1 or batch_size % num_instances:
            raise ValueError(f"batch_size {batch_size} must be a multiple of num_instances {num_instances}")
        self.num_ids = batch_size // num_instances
        if world_size < 1 or not 0 <= rank < world_size or self.num_ids % world_size:
            raise ValueError(
                f"{self.num_ids} identities a batch do not split over world_size {world_size} (rank {rank}): "
                "use a batch_size // num_instances divisible by the number of processes"
            )
        self.num_instances = num_instances
        self.batch_size = batch_size
        self.num_iterations = num_iterations
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        # Members of each class: class c owns order[starts[c]:starts[c] + counts[c]], in increasing index.
        self.classes, self.counts = np.unique(labels, return_counts=True)
        self._order = np.argsort(labels, kind="stable")
        self._starts = np.concatenate(([0], np.cumsum(self.counts)[:-1]))
        self.with_replacement = len(self.classes) < self.num_ids
        if self.with_replacement:
            log.warning(
                "only %d pseudo-identities for %d a batch: identities are drawn with replacement",
                len(self.classes),
                self.num_ids,
            )

    @property
    def max_repeats(self) -> int:
        """Upper bound on the occurrences of one index in a global batch (``InstanceMemory.update``).

        ``K`` when the identities of a batch are distinct, else the batch size.
        """
        return self.batch_size if self.with_replacement else self.num_instances

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_iterations

    def _global_batch(self, rng: np.random.Generator) -> np.ndarray:
        k = self.num_instances
        chosen = rng.choice(len(self.classes), size=self.num_ids, replace=self.with_replacement)
        batch = np.empty((self.num_ids, k), dtype=np.int64)
        for row, c in enumerate(chosen):
            count = self.counts[c]
            picks = rng.choice(count, size=k, replace=count < k)
            batch[row] = self._order[self._starts[c] + picks]
        return batch.reshape(-1)

    def batches(self) -> Iterator[np.ndarray]:
        """Yield this rank's ``(batch_size // world_size,)`` int64 indices for each iteration of the epoch."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
        share = self.batch_size // self.world_size
        for _ in range(self.num_iterations):
            yield self._global_batch(rng)[self.rank * share : (self.rank + 1) * share]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches():
            yield batch.tolist()
