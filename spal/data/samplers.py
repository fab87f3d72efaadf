"""The authors' batch sampler: SpCL's multi-gallery sampler (SPEC 3.7).

One pass of the stream visits every pseudo class once, in a random order: a random anchor image, then, for a
class with other members, ``num_instances - 1`` images taken from the members on another camera than the
anchor's (the same-camera members when there are none). A singleton class (an outlier) adds its one image. So a
pass holds ``num_instances * C + O`` indices (``C`` classes of two or more images, ``O`` singletons), and the
share of clustered images in a batch follows the clustering rather than a fixed number of identities.

Training batches are consecutive slices of the stream (:func:`global_batches`); every process draws the same
stream from ``(seed, epoch)`` and trains on its contiguous slice of each global batch, as DataParallel splits it.
Facts from SpCL's ``RandomMultipleGallerySampler`` (Ge et al., NeurIPS 2020) and the authors' training script
(``IterLoader`` over a ``drop_last`` DataLoader); the code is ours.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["MultiGallerySampler", "global_batches", "max_repeats_in_batch"]

log = logging.getLogger(__name__)


class MultiGallerySampler(Sampler[int]):
    """One pass of the multi-gallery stream per iteration (SPEC 3.7).

    Args:
        labels: ``(n,)`` non-negative int pseudo class of every training image (every outlier has a class of its
            own).
        camids: ``(n,)`` int camera of every training image.
        num_instances: ``K``, the images a class of two or more members adds to a pass (its anchor included).
        seed: base seed; the stream is a pure function of ``(labels, camids, num_instances, seed, epoch)``.

    ``iter(sampler)`` yields the ``len(sampler)`` indices (python ints) of the first pass of the epoch set by
    ``set_epoch``; :meth:`passes` continues with the epoch's further passes.
    """

    def __init__(self, labels: np.ndarray, camids: np.ndarray, num_instances: int = 4, seed: int = 0) -> None:
        labels = np.asarray(labels)
        camids = np.asarray(camids)
        if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be a non-empty 1-d int array, got shape {labels.shape} {labels.dtype}")
        if labels.min() < 0:
            raise ValueError("labels must be >= 0: give every outlier its own class before sampling")
        if camids.shape != labels.shape or not np.issubdtype(camids.dtype, np.integer):
            raise ValueError(f"camids must be {labels.shape[0]} ints, one per label; got shape {camids.shape}")
        if num_instances < 1:
            raise ValueError(f"num_instances must be >= 1, got {num_instances}")
        self.num_instances = int(num_instances)
        self.seed = int(seed)
        self.epoch = 0
        self.camids = camids.astype(np.int64)
        # Members of each class in increasing index: class c owns order[starts[c]:starts[c] + counts[c]].
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        self.members = [order[s : s + c] for s, c in zip(starts.tolist(), counts.tolist(), strict=True)]
        self.num_classes = len(self.members)
        self.num_singletons = int((counts == 1).sum())
        self.pass_length = self.num_singletons + (self.num_classes - self.num_singletons) * self.num_instances

    @property
    def max_repeats(self) -> int:
        """Most occurrences of one index in a pass (``InstanceMemory.update``).

        An index is either its class's anchor (once) or among its followers, which repeat only when drawn with
        replacement (at most ``K - 1`` times); the followers never include the anchor.
        """
        return max(1, self.num_instances - 1)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose stream the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.pass_length

    def _one_pass(self, rng: np.random.Generator) -> np.ndarray:
        k = self.num_instances
        out = np.empty(self.pass_length, dtype=np.int64)
        at = 0
        for c in rng.permutation(self.num_classes).tolist():
            members = self.members[c]
            anchor = members[rng.integers(members.size)] if members.size > 1 else members[0]
            out[at] = anchor
            at += 1
            if members.size == 1 or k == 1:
                continue
            others = members[self.camids[members] != self.camids[anchor]]
            if others.size == 0:
                others = members[members != anchor]
            out[at : at + k - 1] = rng.choice(others, size=k - 1, replace=others.size < k)
            at += k - 1
        return out

    def passes(self) -> Iterator[np.ndarray]:
        """Yield the epoch's passes, each ``(len(self),)`` int64, without end (the first one is ``iter(self)``)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
        while True:
            yield self._one_pass(rng)

    def __iter__(self) -> Iterator[int]:
        yield from next(self.passes()).tolist()


def global_batches(sampler: MultiGallerySampler, batch_size: int, num_batches: int) -> Iterator[np.ndarray]:
    """Cut the sampler's stream into ``num_batches`` global batches of ``batch_size`` consecutive indices.

    As the authors' loader: each pass is cut into ``len(sampler) // batch_size`` batches, its last partial slice
    dropped, and the next pass starts with a new permutation. A pass shorter than one batch (very few pseudo
    classes) would give no batch at all; then the passes are joined and batches run across them (a warning is
    logged), so an index may occur ``sampler.max_repeats * batches_spanned`` times in a batch
    (:func:`max_repeats_in_batch`).

    Yields:
        ``(batch_size,)`` int64 arrays; process ``r`` of ``W`` trains on slice ``r`` of ``batch_size / W``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_batches <= 0:
        return
    join = len(sampler) < batch_size
    if join:
        log.warning(
            "a pass of the sampler holds %d images (%d pseudo classes, %d of them singletons), fewer than a "
            "batch of %d: batches run across passes",
            len(sampler),
            sampler.num_classes,
            sampler.num_singletons,
            batch_size,
        )
    pending = np.empty(0, dtype=np.int64)
    done = 0
    for stream in sampler.passes():
        pending = np.concatenate((pending, stream)) if join else stream
        whole = len(pending) // batch_size
        for b in range(min(whole, num_batches - done)):
            yield pending[b * batch_size : (b + 1) * batch_size]
        done += whole
        if done >= num_batches:
            return
        pending = pending[whole * batch_size :]


def max_repeats_in_batch(sampler: MultiGallerySampler, batch_size: int) -> int:
    """Upper bound on the occurrences of one index in a batch of :func:`global_batches`."""
    passes_spanned = 1 if len(sampler) >= batch_size else -(-batch_size // len(sampler)) + 1
    return sampler.max_repeats * passes_spanned
