"""Cluster-level contrastive loss over the instance memory (SpCL's HybridMemory loss, SPEC section 3.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cluster_contrastive_loss", "class_mean_logits"]


def class_mean_logits(
    x: torch.Tensor,
    memory: torch.Tensor,
    memory_labels: torch.Tensor,
    num_classes: int,
    temperature: float,
) -> torch.Tensor:
    """``s[b, c]`` = mean over memory rows ``j`` with label ``c`` of ``x[b] . memory[j] / temperature``.

    Args:
        x: ``(B, d)`` float features.
        memory: ``(n, d)`` memory features (detached inside: no gradient reaches the memory).
        memory_labels: ``(n,)`` long class of every memory row, in ``[0, num_classes)``.
        num_classes: ``C``.
        temperature: ``tau``.

    Returns:
        ``(B, C)`` float32 logits; ``-inf`` for a class without memory rows (it takes no part in the softmax).

    Cost O(B n d) for ``x @ memory.T``, then an ``index_add`` into ``(B, C)``; no host synchronisation.
    """
    # float32 on purpose: at tau = 0.05 bf16 rounding of the similarities would move logits by ~0.1.
    with torch.autocast(device_type=x.device.type, enabled=False):
        sims = x.float() @ memory.detach().float().T / temperature  # (B, n)
        sums = sims.new_zeros((x.shape[0], num_classes)).index_add(1, memory_labels, sims)
        counts = sims.new_zeros(num_classes).index_add_(0, memory_labels, sims.new_ones(memory_labels.shape[0]))
        logits = sums / counts.clamp_min(1.0)
        return logits.masked_fill(counts == 0, float("-inf"))


def cluster_contrastive_loss(
    x: torch.Tensor,
    targets: torch.Tensor,
    memory: torch.Tensor,
    memory_labels: torch.Tensor,
    num_classes: int,
    temperature: float = 0.05,
) -> torch.Tensor:
    """Mean over the batch of the cross-entropy of ``softmax(class_mean_logits(x, ...))`` and ``targets``.

    Args:
        x: ``(B, d)`` L2-normalised batch features (the gradient flows to ``x`` only).
        targets: ``(B,)`` long pseudo label of each batch image; each must be a class with memory rows.
        memory, memory_labels, num_classes, temperature: as for ``class_mean_logits``.
    """
    logits = class_mean_logits(x, memory, memory_labels, num_classes, temperature)
    return F.cross_entropy(logits, targets)
