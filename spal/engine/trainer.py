"""One epoch of training steps: PK batches, batched augmentation, both losses, the memory update."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from spal.data import PKSampler, TrainAugment
from spal.distributed import DistContext, all_gather_cat
from spal.losses import InstanceMemory, SupportPairIndex, cluster_contrastive_loss, support_pair_loss_indexed

__all__ = ["EpochTargets", "train_epoch"]

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


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    memory: InstanceMemory,
    images: torch.Tensor,
    targets: EpochTargets,
    *,
    epoch: int,
    iters: int,
    batch_size: int,
    num_instances: int,
    seed: int,
    temperature: float,
    momentum: float,
    margin: float,
    lambda_sp: float,
    augment: TrainAugment,
    ctx: DistContext,
    amp: bool = False,
) -> dict[str, float]:
    """Run ``iters`` optimisation steps and return the mean losses.

    Args:
        images: ``(n, 3, H, W)`` uint8 decoded training set (on the CPU or already on ``ctx.device``).
        targets: pseudo labels and constraints of this epoch.

    Every rank draws the same global batch (the sampler is seeded by ``seed`` and ``epoch``) and trains on its
    share; the memory update uses the all-gathered batch, so each rank's memory stays identical.
    """
    device = ctx.device
    sampler = PKSampler(
        targets.pseudo_labels,
        num_instances=num_instances,
        batch_size=batch_size,
        num_iterations=iters,
        seed=seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    sampler.set_epoch(epoch)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 100_003 + epoch * 1_009 + ctx.rank)
    memory_labels = torch.as_tensor(targets.pseudo_labels, device=device)
    cannot_link_edges = torch.as_tensor(targets.cannot_link_edges, dtype=torch.long).reshape(-1, 2)
    use_sp = lambda_sp != 0 and cannot_link_edges.numel() > 0
    pair_index = SupportPairIndex.build(
        torch.as_tensor(targets.component_ids, dtype=torch.long), cannot_link_edges, device=device
    )

    model.train()
    totals = {"loss": 0.0, "loss_contrastive": 0.0, "loss_support": 0.0}
    progress = tqdm(sampler.batches(), total=iters, desc=f"train epoch {epoch}", disable=not ctx.is_main,
                    leave=False)
    for step, batch_indices in enumerate(progress):
        indices = torch.as_tensor(batch_indices, dtype=torch.long)
        batch = images[indices.to(images.device)].to(device, non_blocking=True)
        inputs = augment(batch, generator=generator)
        indices = indices.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            features = model(inputs)
        features = features.float()
        loss_c = cluster_contrastive_loss(
            features, memory_labels[indices], memory.features, memory_labels, targets.num_classes, temperature
        )
        if use_sp:
            loss_s = support_pair_loss_indexed(features, indices, memory.features, pair_index, margin=margin)
        else:
            loss_s = features.new_zeros(())
        loss = loss_c + lambda_sp * loss_s
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        memory.update(
            all_gather_cat(indices, ctx),
            all_gather_cat(features.detach(), ctx),
            momentum=momentum,
            max_repeats=sampler.max_repeats,
        )
        totals["loss"] += float(loss.detach())
        totals["loss_contrastive"] += float(loss_c.detach())
        totals["loss_support"] += float(loss_s.detach())
        if step % 10 == 0:
            progress.set_postfix(loss=f"{float(loss.detach()):.3f}")
    return {key: value / max(iters, 1) for key, value in totals.items()}
