"""The instance memory: one L2-normalised feature per training image, moved by momentum after every step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["InstanceMemory", "occurrence_rank"]


def occurrence_rank(indices: torch.Tensor) -> torch.Tensor:
    """``(B,)`` long: for each position of ``indices`` ``(B,)``, how many earlier ones hold the same value.

    E.g. ``[5, 2, 5, 5] -> [0, 0, 1, 2]``. Computed with tensor operations only (no host synchronisation).
    """
    b = indices.shape[0]
    sorted_values, order = torch.sort(indices, stable=True)
    positions = torch.arange(b, device=indices.device)
    run_start = torch.ones(b, dtype=torch.bool, device=indices.device)
    run_start[1:] = sorted_values[1:] != sorted_values[:-1]
    first_of_run = torch.cummax(torch.where(run_start, positions, 0), dim=0).values
    return torch.empty_like(positions).scatter_(0, order, positions - first_of_run)


class InstanceMemory(nn.Module):
    """Holds ``features``, an ``(n, d)`` float buffer (not a parameter: no gradient, saved in the state dict).

    Args:
        features: ``(n, d)`` initial features (L2-normalised, e.g. extracted with the test transform); copied
            to float32.
    """

    features: torch.Tensor

    def __init__(self, features: torch.Tensor) -> None:
        super().__init__()
        if features.dim() != 2:
            raise ValueError(f"features must be (n, d), got shape {tuple(features.shape)}")
        self.register_buffer("features", features.detach().to(torch.float32).clone())

    @property
    def num_samples(self) -> int:
        return self.features.shape[0]

    @torch.no_grad()
    def update(
        self,
        indices: torch.Tensor,
        batch_features: torch.Tensor,
        momentum: float = 0.2,
        max_repeats: int | None = None,
    ) -> None:
        """``M[i] <- normalise(momentum * M[i] + (1 - momentum) * x)`` for each batch row ``(i, x)``.

        Args:
            indices: ``(B,)`` long memory rows, on the memory's device.
            batch_features: ``(B, d)`` features (detached inside).
            momentum: weight of the old memory entry (the paper's m = 0.2).
            max_repeats: an upper bound on how often one index occurs in ``indices`` (e.g. from the host-side
                sampler); ``None`` computes it, which costs one device-to-host synchronisation on a GPU.

        An index that occurs several times is updated once per occurrence, in batch order, each update
        starting from the result of the previous one (as SpCL's sequential loop). Rows are processed in
        rounds: round ``r`` updates the ``r``-th occurrence of every index at once.
        """
        if indices.numel() == 0:
            return
        values = batch_features.detach().to(self.features.dtype)
        rank = occurrence_rank(indices)
        rounds = int(rank.max().item()) + 1 if max_repeats is None else max_repeats
        for r in range(rounds):
            old = self.features[indices]
            new = F.normalize(momentum * old + (1.0 - momentum) * values, dim=1)
            # Rows outside round r add an exact zero, so duplicates never race; each index receives one delta.
            delta = torch.where((rank == r).unsqueeze(1), new - old, 0.0)
            self.features.index_add_(0, indices, delta)
