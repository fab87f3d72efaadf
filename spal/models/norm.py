"""BatchNorm over equal groups of the batch, to emulate several GPUs' BatchNorm statistics on one device.

The paper trains with DataParallel on 4 GPUs x 16 images, so every BatchNorm layer sees 16 images at a time in
training mode. ``GroupedBatchNorm`` with ``groups=4`` on a batch of 64 reproduces that on one GPU: the batch
is cut into 4 consecutive groups of 16, each normalised with its own statistics. The running statistics move
by the mean of what each group's plain BatchNorm update would be; since the update is linear in the batch
statistics this equals one update with the groups' mean (and unbiased variance) averaged.

Design: the groups are folded into the channel axis, ``(B, C, ...) -> (B/K, K*C, ...)``, so one call of the
stock ``F.batch_norm`` kernel (fused forward and backward, mixed precision handled as for plain BN) computes
all groups at once. No Python branch depends on tensor values, so a training step stays free of host
synchronisation and can be captured in a CUDA graph. Parameters and buffers keep the names of
``nn.BatchNorm*d`` so state dicts interchange.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "PAPER_BN_BATCH",
    "BatchNormLayoutError",
    "GroupedBatchNorm",
    "bn_groups_for",
    "convert_to_grouped_batchnorm",
    "resolve_bn_groups",
]

#: Images each BatchNorm group normalises over in the paper's runs (64 images over 4 GPUs, SPEC 2).
PAPER_BN_BATCH = 16


class BatchNormLayoutError(ValueError):
    """A global batch and a process count that cannot give the asked BatchNorm groups; one line says what works."""


def bn_groups_for(global_batch: int, world_size: int, bn_batch: int = PAPER_BN_BATCH) -> int:
    """BatchNorm groups each of ``world_size`` processes cuts its slice into, so every group holds ``bn_batch``.

    The one rule behind ``spal train``'s default and the harness's layouts (SPEC 2): with a global batch of 64
    and groups of 16, 4 groups on one process, 2 on each of two, 1 on each of four.

    Args:
        global_batch: images of one step over all processes.
        world_size: number of processes, each training on ``global_batch / world_size`` consecutive images.
        bn_batch: images a BatchNorm group normalises over.

    Raises:
        BatchNormLayoutError: ``global_batch`` is not a multiple of ``bn_batch``, or the ``global_batch /
            bn_batch`` groups do not split evenly over ``world_size`` processes; the message names the process
            counts that work.
    """
    if bn_batch < 1 or global_batch < 1 or global_batch % bn_batch:
        raise BatchNormLayoutError(
            f"a global batch of {global_batch} images does not split into BatchNorm groups of {bn_batch}: "
            f"use a batch size that is a multiple of {bn_batch}, or give the groups explicitly (--bn-groups)"
        )
    groups = global_batch // bn_batch
    if world_size < 1 or groups % world_size:
        valid = [w for w in range(1, groups + 1) if groups % w == 0]
        counts = ", ".join(map(str, valid[:-1])) + (" or " if len(valid) > 1 else "") + str(valid[-1])
        raise BatchNormLayoutError(
            f"{world_size} processes cannot split a global batch of {global_batch} into BatchNorm groups of "
            f"{bn_batch} images; run on {counts} processes"
        )
    return groups // world_size


def resolve_bn_groups(global_batch: int, world_size: int, bn_groups: int | None) -> int:
    """The BatchNorm groups of one process: ``bn_groups`` when given, else :func:`bn_groups_for` (16 images).

    Raises:
        BatchNormLayoutError: a process's slice ``global_batch / world_size`` is not whole or does not split
            into ``bn_groups`` equal groups, or (``bn_groups`` None) :func:`bn_groups_for`'s conditions.
    """
    if bn_groups is None:
        return bn_groups_for(global_batch, world_size)
    if world_size < 1 or global_batch % world_size or bn_groups < 1 or (global_batch // world_size) % bn_groups:
        raise BatchNormLayoutError(
            f"a global batch of {global_batch} over {world_size} processes does not split into {bn_groups} "
            f"BatchNorm groups a process; choose --bn-groups dividing {global_batch // max(world_size, 1)}, "
            "or leave it out for groups of 16"
        )
    return bn_groups


class GroupedBatchNorm(_BatchNorm):
    """BatchNorm of ``(B, C)`` or ``(B, C, *spatial)`` inputs that normalises ``groups`` batch parts apart.

    In training mode (and in eval mode without running statistics) the batch is split into ``groups``
    consecutive parts of ``B / groups`` samples; each part is normalised with its own per-channel mean and
    biased variance. ``B`` must be divisible by ``groups``. In eval mode with running statistics, and whenever
    ``groups == 1``, it behaves exactly as ``nn.BatchNorm1d`` / ``nn.BatchNorm2d``.

    Args:
        num_features: ``C``, the channel count.
        groups: ``K``, the number of batch groups (e.g. 4 to emulate 4 GPUs).
        eps, momentum, affine, track_running_stats: as for ``nn.BatchNorm2d``; ``momentum`` must be a float
            (the cumulative average of ``momentum=None`` needs the step count on the host).
    """

    def __init__(
        self,
        num_features: int,
        groups: int = 1,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        if momentum is None:
            raise ValueError("GroupedBatchNorm needs a float momentum (e.g. 0.1); momentum=None is not supported")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.groups = int(groups)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected a (B, C, ...) input, got shape {tuple(input.shape)}")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, groups={self.groups}"

    @classmethod
    def from_batchnorm(cls, bn: _BatchNorm, groups: int) -> GroupedBatchNorm:
        """Wrap an existing BatchNorm layer; the new one shares its parameters and buffers (same objects)."""
        grouped = cls(
            bn.num_features,
            groups=groups,
            eps=bn.eps,
            momentum=bn.momentum,
            affine=bn.affine,
            track_running_stats=bn.track_running_stats,
            device="meta",
        )
        # Reuse the very Parameter objects so requires_grad flags (a frozen bias) and optimiser links survive.
        grouped.weight = bn.weight
        grouped.bias = bn.bias
        grouped.running_mean = bn.running_mean
        grouped.running_var = bn.running_var
        grouped.num_batches_tracked = bn.num_batches_tracked
        grouped.train(bn.training)
        return grouped

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        use_batch_stats = self.training or self.running_mean is None
        if self.groups == 1 or not use_batch_stats:
            return super().forward(input)
        self._check_input_dim(input)
        k = self.groups
        b, c = input.shape[:2]
        rest = tuple(input.shape[2:])
        if b % k:
            raise ValueError(
                f"a batch of {b} samples does not split into {k} BatchNorm groups: "
                f"use a batch size divisible by bn_groups={k}"
            )
        # Group g's samples become channels [g*C, (g+1)*C) of a batch of B/K samples.
        folded = input.reshape(k, b // k, c, *rest).transpose(0, 1).reshape(b // k, k * c, *rest)
        update = self.training and self.track_running_stats
        running_mean = self.running_mean.repeat(k) if update else None
        running_var = self.running_var.repeat(k) if update else None
        weight = self.weight.repeat(k) if self.weight is not None else None
        bias = self.bias.repeat(k) if self.bias is not None else None
        out = F.batch_norm(folded, running_mean, running_var, weight, bias, True, self.momentum, self.eps)
        if update:
            with torch.no_grad():
                self.running_mean.copy_(running_mean.view(k, c).mean(0))
                self.running_var.copy_(running_var.view(k, c).mean(0))
                self.num_batches_tracked.add_(1)
        # Unfold into a tensor laid out like the input (keeps channels_last), in one copy.
        result = torch.empty_like(input)
        result.view(k, b // k, c, *rest).copy_(out.view(b // k, k, c, *rest).transpose(0, 1))
        return result


def convert_to_grouped_batchnorm(module: nn.Module, groups: int) -> nn.Module:
    """Replace every BatchNorm layer under ``module`` by a ``GroupedBatchNorm`` with ``groups`` groups.

    Parameters and buffers are shared with the replaced layers, so the state dict keys and values are
    unchanged. ``groups == 1`` returns ``module`` untouched. Returns the (possibly new) root module.
    """
    if groups == 1:
        return module
    if isinstance(module, _BatchNorm) and not isinstance(module, GroupedBatchNorm):
        return GroupedBatchNorm.from_batchnorm(module, groups)
    for name, child in module.named_children():
        converted = convert_to_grouped_batchnorm(child, groups)
        if converted is not child:
            setattr(module, name, converted)
    return module
