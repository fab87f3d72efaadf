"""One epoch of training steps: multi-gallery batches, batched augmentation, both losses, the memory update.

Every rank draws the same global batch (the sampler and the augmentation are seeded by ``seed`` and ``epoch``
alone) and trains on its contiguous slice of it (SPEC 3.7), so a run on W processes computes what one process
computes when its BatchNorm groups are the ranks' slices: the same images, the same augmentation, BatchNorm
over the same groups, the same loss normalisation (see :func:`train_epoch`), and the same memory update from
the all-gathered batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from spal.data import MultiGallerySampler, TrainAugment, global_batches, max_repeats_in_batch
from spal.distributed import DistContext, all_gather_cat
from spal.engine.config import TrainConfig
from spal.losses import InstanceMemory, SupportPairIndex, cluster_contrastive_loss, support_pair_loss_indexed

__all__ = ["EpochTargets", "StepSettings", "TrainImages", "train_epoch", "support_pair_eligible"]

log = logging.getLogger(__name__)


@dataclass
class EpochTargets:
    """What the label phase hands to training for one epoch.

    Attributes:
        pseudo_labels: ``(n,)`` int64 class of every training image (clusters first, then one class per outlier).
        num_classes: number of pseudo classes.
        component_ids: ``(n,)`` int64 must-link component id of every image (the smallest member's index).
        cannot_link_edges: ``(E, 2)`` int64 pairs of component ids that cannot-link.
    """

    pseudo_labels: np.ndarray
    num_classes: int
    component_ids: np.ndarray
    cannot_link_edges: np.ndarray


@dataclass(frozen=True)
class StepSettings:
    """The settings of the training steps, the same every epoch (see :class:`spal.engine.config.TrainConfig`).

    Attributes:
        iters: optimisation steps an epoch.
        batch_size: the global batch; each of the ``world_size`` ranks trains on ``batch_size / world_size``.
        num_instances: K of the multi-gallery sampler.
        seed: the run's seed; with the epoch it seeds the sampler and the augmentation.
        temperature, momentum, margin, lambda_sp: the losses' and the memory's hyper-parameters.
        precision: ``"bf16"`` runs the model under bfloat16 autocast (the losses and the memory stay float32),
            ``"fp32"`` in float32.
    """

    iters: int
    batch_size: int
    num_instances: int
    seed: int
    temperature: float
    momentum: float
    margin: float
    lambda_sp: float
    precision: str = "fp32"

    @classmethod
    def from_config(cls, cfg: TrainConfig, precision: str) -> StepSettings:
        """The step settings of ``cfg``, run in ``precision`` (resolved: ``"bf16"`` or ``"fp32"``)."""
        return cls(
            iters=cfg.iters,
            batch_size=cfg.batch_size,
            num_instances=cfg.num_instances,
            seed=cfg.seed,
            temperature=cfg.temperature,
            momentum=cfg.momentum,
            margin=cfg.margin,
            lambda_sp=cfg.lambda_sp,
            precision=precision,
        )


@dataclass
class TrainImages:
    """The training set as the steps read it, the same every epoch.

    Attributes:
        images: ``(n, 3, H, W)`` uint8 decoded training set (on the CPU or already on the training device).
        camids: ``(n,)`` int camera of every training image (the sampler takes a class's followers from other
            cameras than its anchor's).
        augment: the batched augmentation, on the training device.
    """

    images: torch.Tensor
    camids: np.ndarray
    augment: TrainAugment


def support_pair_eligible(component_ids: np.ndarray, cannot_link_edges: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: which images have both a must-link and a cannot-link partner (the support-pair loss's set).

    Args:
        component_ids: ``(n,)`` int64 must-link component of each image.
        cannot_link_edges: ``(E, 2)`` int64 cannot-linked component pairs.
    """
    n = component_ids.shape[0]
    sizes = np.bincount(component_ids, minlength=n)
    has_cl = np.zeros(n, dtype=bool)
    has_cl[np.asarray(cannot_link_edges, dtype=np.int64).reshape(-1)] = True
    return (sizes[component_ids] > 1) & has_cl[component_ids]


@dataclass
class _EpochPlan:
    """What one epoch's steps share: the batch stream, the augmentation's generator and the loss targets."""

    batches: Iterator[np.ndarray]
    generator: torch.Generator
    max_repeats: int
    memory_labels: torch.Tensor
    pair_index: SupportPairIndex
    eligible: torch.Tensor
    use_sp: bool


def _plan_epoch(
    train: TrainImages, targets: EpochTargets, epoch: int, settings: StepSettings, device: torch.device
) -> _EpochPlan:
    """The sampler, the seeded generator and the targets on ``device`` (the same on every rank)."""
    sampler = MultiGallerySampler(
        targets.pseudo_labels, train.camids, num_instances=settings.num_instances, seed=settings.seed
    )
    sampler.set_epoch(epoch)
    max_repeats = max_repeats_in_batch(sampler, settings.batch_size)
    generator = torch.Generator(device=device)
    generator.manual_seed(settings.seed * 100_003 + epoch * 1_009)
    memory_labels = torch.as_tensor(targets.pseudo_labels, device=device)
    cannot_link_edges = torch.as_tensor(targets.cannot_link_edges, dtype=torch.long).reshape(-1, 2)
    pair_index = SupportPairIndex.build(
        torch.as_tensor(targets.component_ids, dtype=torch.long), cannot_link_edges, device=device
    )
    eligible = torch.as_tensor(support_pair_eligible(targets.component_ids, targets.cannot_link_edges), device=device)
    return _EpochPlan(
        batches=iter(global_batches(sampler, settings.batch_size, settings.iters)),
        generator=generator,
        max_repeats=max_repeats,
        memory_labels=memory_labels,
        pair_index=pair_index,
        eligible=eligible,
        use_sp=settings.lambda_sp != 0 and cannot_link_edges.numel() > 0,
    )


def _rank_batch(
    batch_indices: np.ndarray, train: TrainImages, plan: _EpochPlan, share: int, ctx: DistContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(global_indices (B,), inputs (B / world, 3, H, W))``: the global batch's indices on the device and this
    rank's augmented share of it."""
    device, rank = ctx.device, ctx.rank
    global_indices = torch.as_tensor(batch_indices, dtype=torch.long)
    on_cuda = device.type == "cuda"
    if on_cuda:
        # A copy from pageable memory blocks the host until the device has caught up; from pinned memory
        # it is queued on the stream like any kernel.
        global_indices = global_indices.pin_memory().to(device, non_blocking=True)
    batch = train.images[global_indices.to(train.images.device)].to(device, non_blocking=True)
    # Augment the whole global batch with the shared generator, then keep this rank's share: the random
    # draws then do not depend on the number of processes.
    inputs = train.augment(batch, generator=plan.generator)[rank * share : (rank + 1) * share]
    if on_cuda:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return global_indices.to(device), inputs


def _losses(
    features: torch.Tensor,
    indices: torch.Tensor,
    global_indices: torch.Tensor,
    memory: InstanceMemory,
    targets: EpochTargets,
    plan: _EpochPlan,
    settings: StepSettings,
    world: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(contrastive, support-pair)`` losses of this rank's ``(B / world, D)`` features (see :func:`train_epoch`
    for the normalisation)."""
    loss_c = cluster_contrastive_loss(
        features, plan.memory_labels[indices], memory.features, plan.memory_labels, targets.num_classes,
        settings.temperature,
    )  # fmt: skip
    if not plan.use_sp:
        return loss_c, features.new_zeros(())
    total = support_pair_loss_indexed(
        features, indices, memory.features, plan.pair_index, margin=settings.margin, reduction="sum"
    )
    return loss_c, total * world / plan.eligible[global_indices].sum().clamp_min(1)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    memory: InstanceMemory,
    train: TrainImages,
    targets: EpochTargets,
    *,
    epoch: int,
    settings: StepSettings,
    ctx: DistContext,
) -> dict[str, float]:
    """Run ``settings.iters`` optimisation steps and return the mean losses (of this rank's shares).

    Args:
        train: the decoded training set, its cameras and the augmentation.
        targets: pseudo labels and constraints of this epoch.
        settings: batch, sampler, loss and precision settings (the global batch is split over the
            ``ctx.world_size`` ranks).

    On CUDA the step never waits for the device: the batch indices are copied from pinned memory without
    blocking, the batch goes channels_last (the model should be too), and nothing is read back until the epoch's
    mean losses. The CPU path is the plain one (contiguous layout, blocking copies that cost nothing there).

    Loss normalisation: the contrastive loss is a mean over the rank's share, and DDP averages gradients over
    ranks, which gives the global mean. The support-pair loss is a mean over the eligible images of the *global*
    batch, so each rank divides its sum by the global count (known on every rank from the indices alone) and
    multiplies by the world size to undo DDP's averaging.
    """
    device, world, rank = ctx.device, ctx.world_size, ctx.rank
    share = settings.batch_size // world
    plan = _plan_epoch(train, targets, epoch, settings, device)
    model.train()
    totals = {key: torch.zeros((), device=device) for key in ("loss", "loss_contrastive", "loss_support")}
    progress = tqdm(
        plan.batches, total=settings.iters, desc=f"train epoch {epoch}", disable=not ctx.is_main or None, leave=False
    )
    for batch_indices in progress:
        global_indices, inputs = _rank_batch(batch_indices, train, plan, share, ctx)
        indices = global_indices[rank * share : (rank + 1) * share]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16"):
            features = model(inputs)
        features = features.float()
        loss_c, loss_s = _losses(features, indices, global_indices, memory, targets, plan, settings, world)
        loss = loss_c + settings.lambda_sp * loss_s
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        memory.update(
            all_gather_cat(indices, ctx),
            all_gather_cat(features.detach(), ctx),
            momentum=settings.momentum,
            max_repeats=plan.max_repeats,
        )
        # Accumulated on the device: no host synchronisation inside the loop.
        for key, value in zip(totals, (loss, loss_c, loss_s)):
            totals[key] += value.detach()
    return {key: float(value) / max(settings.iters, 1) for key, value in totals.items()}
