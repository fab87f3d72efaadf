"""Support-pair loss (SPEC section 3.5): a margin ranking loss on squared distances to the memory entries of
must-link (ML) and cannot-link (CL) partners.

Must-link partners of batch image ``i`` are the memory rows of its ML component other than ``i`` itself;
cannot-link partners are the rows of every component that cannot-links ``i``'s component. Both masks are built
as ``(B, n)`` tensors from per-row component ids, never as an ``n x n`` matrix: a CL edge set between
components is stored as sorted integer keys ``a * 2**31 + b`` (both orientations), and "does component ``a``
cannot-link component ``b``" is one ``searchsorted``. The whole loss uses tensor operations only, with no host
synchronisation, so it can sit inside a captured training step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SupportPairIndex", "cannot_link_keys", "support_pair_loss", "support_pair_loss_indexed"]

# Component ids must stay below this bound so that two of them pack into one int64 key.
_KEY_BASE = 2**31


def cannot_link_keys(cannot_link_edges: torch.Tensor) -> torch.Tensor:
    """``(2E,)`` sorted int64 keys ``a * 2**31 + b`` of the ``(E, 2)`` edges ``(a, b)``, both ways round."""
    edges = cannot_link_edges.reshape(-1, 2).long()
    both = torch.cat((edges, edges.flip(1)), dim=0)
    return torch.sort(both[:, 0] * _KEY_BASE + both[:, 1]).values


@dataclass(frozen=True)
class SupportPairIndex:
    """The constraint data of one epoch, prepared once for every training step.

    Attributes:
        component_ids: ``(n,)`` int64 ML component id of every memory row (any ids in ``[0, 2**31)``, e.g. the
            component's smallest member index).
        cl_keys: ``(2E,)`` sorted int64 keys of the CL edges between component ids (``cannot_link_keys``).
    """

    component_ids: torch.Tensor
    cl_keys: torch.Tensor

    @classmethod
    def build(
        cls,
        component_ids: torch.Tensor,
        cannot_link_edges: torch.Tensor,
        device: torch.device | str | None = None,
    ) -> SupportPairIndex:
        """Validate and move the constraint data to ``device`` (default: that of ``component_ids``).

        Args:
            component_ids: ``(n,)`` int ML component id of every memory row.
            cannot_link_edges: ``(E, 2)`` int unordered pairs of component ids that cannot-link.

        Raises:
            ValueError: an id outside ``[0, 2**31)``, or a component that cannot-links itself.
        """
        device = component_ids.device if device is None else torch.device(device)
        comp = torch.as_tensor(component_ids, dtype=torch.int64, device=device).reshape(-1)
        edges = torch.as_tensor(cannot_link_edges, dtype=torch.int64, device=device).reshape(-1, 2)
        for name, ids in (("component_ids", comp), ("cannot_link_edges", edges)):
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= _KEY_BASE):
                raise ValueError(f"{name} must lie in [0, 2**31): renumber the components")
        if edges.numel() and bool((edges[:, 0] == edges[:, 1]).any()):
            raise ValueError("a component cannot-links itself: the constraint graph is inconsistent")
        return cls(component_ids=comp, cl_keys=cannot_link_keys(edges))


def support_pair_loss_indexed(
    x: torch.Tensor,
    indices: torch.Tensor,
    memory: torch.Tensor,
    index: SupportPairIndex,
    margin: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean over batch images with both an ML and a CL partner of ``relu(d_ap - d_an + margin)``.

    Args:
        x: ``(B, d)`` batch features (the gradient flows to ``x`` only).
        indices: ``(B,)`` long memory row of each batch image.
        memory: ``(n, d)`` memory features as before this step's update (detached inside).
        index: this epoch's ``SupportPairIndex``.
        margin: ranking margin on squared Euclidean distances.
        reduction: ``"mean"`` (over the images that have both partners) or ``"sum"`` (for a caller that
            normalises by a count of its own, e.g. over the global batch of several processes).

    ``d_ap`` is the largest squared Euclidean distance from ``x[b]`` to its ML partners' memory rows, ``d_an``
    the smallest to its CL partners'. Returns a scalar; exactly 0 (still differentiable, zero gradient) when
    no batch image has both kinds of partner. Memory O(B n).
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        feats = x.float()
        mem = memory.detach().float()
        comp = index.component_ids
        n = mem.shape[0]
        # Squared distances by expansion; clamped because rounding can make a tiny one negative.
        dist = (feats.pow(2).sum(1, keepdim=True) + mem.pow(2).sum(1) - 2.0 * feats @ mem.T).clamp_min(0.0)
        batch_comp = comp[indices]  # (B,)
        not_self = torch.arange(n, device=x.device).unsqueeze(0) != indices.unsqueeze(1)
        must = (comp.unsqueeze(0) == batch_comp.unsqueeze(1)) & not_self  # (B, n)
        cannot = _cannot_link_mask(batch_comp, comp, index.cl_keys)  # (B, n)
        d_ap = dist.masked_fill(~must, float("-inf")).amax(dim=1)
        d_an = dist.masked_fill(~cannot, float("inf")).amin(dim=1)
        valid = must.any(dim=1) & cannot.any(dim=1)
        hinge = torch.where(valid, torch.relu(d_ap - d_an + margin), 0.0)
        if reduction == "sum":
            return hinge.sum()
        if reduction != "mean":
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        return hinge.sum() / valid.sum().clamp_min(1)


def _cannot_link_mask(batch_comp: torch.Tensor, comp: torch.Tensor, cl_keys: torch.Tensor) -> torch.Tensor:
    """``(B, n)`` bool: does component ``batch_comp[b]`` cannot-link component ``comp[j]``."""
    if cl_keys.numel() == 0:
        return torch.zeros((batch_comp.shape[0], comp.shape[0]), dtype=torch.bool, device=comp.device)
    keys = batch_comp.unsqueeze(1) * _KEY_BASE + comp.unsqueeze(0)  # (B, n)
    slot = torch.searchsorted(cl_keys, keys).clamp_max(cl_keys.numel() - 1)
    return cl_keys[slot] == keys


def support_pair_loss(
    x: torch.Tensor,
    indices: torch.Tensor,
    memory: torch.Tensor,
    component_ids: torch.Tensor,
    cannot_link_edges: torch.Tensor,
    margin: float = 1.0,
) -> torch.Tensor:
    """``support_pair_loss_indexed`` from raw constraint data (sorts the CL keys on every call).

    Args:
        component_ids: ``(n,)`` long ML component id of every memory row, in ``[0, 2**31)``.
        cannot_link_edges: ``(E, 2)`` long unordered pairs of component ids that cannot-link.
        x, indices, memory, margin: as for ``support_pair_loss_indexed``.

    Prefer building a ``SupportPairIndex`` once an epoch (it also validates the ids) and calling
    ``support_pair_loss_indexed`` in the steps.
    """
    index = SupportPairIndex(component_ids=component_ids.long(), cl_keys=cannot_link_keys(cannot_link_edges))
    return support_pair_loss_indexed(x, indices, memory, index, margin)
