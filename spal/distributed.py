"""Process-group plumbing for torchrun / DistributedDataParallel.

The label phase (clustering, selection, the constraint graph, the annotation log) runs once, on rank 0, and its
result is broadcast, so every rank trains on the same pseudo labels and the log has a single writer. Every rank
holds the full instance memory and applies the same all-gathered update after each step, so the memories never
diverge.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "init_distributed",
    "broadcast_object",
    "all_gather_cat",
    "average_buffers",
    "barrier",
    "shutdown",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _pick_device(preference: str, local_rank: int) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    if preference in ("cuda", "auto") and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group that torchrun describes in the environment, or run as a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = _pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        log.info("joined process group: rank %d of %d (%s, %s)", rank, world_size, backend, torch_device)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Send rank 0's ``obj`` (any picklable object) to every rank; a no-op for one process."""
    if not ctx.distributed:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_cat(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate equally shaped ``(b, ...)`` tensors of every rank in rank order into ``(world_size * b, ...)``."""
    if not ctx.distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(ctx.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def average_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Replace every floating-point buffer (BatchNorm running statistics) by its mean over the ranks.

    Each rank updates its running statistics from its own share of the batch (DDP runs with
    ``broadcast_buffers=False``). The running averages are linear in the batch statistics, so averaging them once
    at the end of an epoch gives exactly the running statistics of one process that normalises the same groups
    separately (``--bn-groups``), whose update is the mean over groups.
    """
    if not ctx.distributed:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(ctx.world_size)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
