"""Losses over the instance memory: cluster contrastive and support pair, plus the memory itself."""

from spal.losses.contrastive import class_mean_logits, cluster_contrastive_loss
from spal.losses.memory import InstanceMemory, occurrence_rank
from spal.losses.support_pair import (
    SupportPairIndex,
    cannot_link_keys,
    support_pair_loss,
    support_pair_loss_indexed,
)

__all__ = [
    "InstanceMemory",
    "SupportPairIndex",
    "cannot_link_keys",
    "class_mean_logits",
    "cluster_contrastive_loss",
    "occurrence_rank",
    "support_pair_loss",
    "support_pair_loss_indexed",
]
