"""Backbones for person re-identification: ``create(arch, pretrained=PATH | None, ...)``, ``names()``, the weights a
run loads (``resolve_pretrained``) and its BatchNorm layout (``bn_groups_for``)."""

from spal.models.norm import (
    PAPER_BN_BATCH,
    BatchNormLayoutError,
    GroupedBatchNorm,
    bn_groups_for,
    convert_to_grouped_batchnorm,
    resolve_bn_groups,
)
from spal.models.pretrained import (
    PretrainedError,
    PretrainedNotFoundError,
    PretrainedWeights,
    hub_checkpoint_dir,
    load_pretrained,
)
from spal.models.registry import PRETRAINED_CHOICES, create, names, resolve_pretrained
from spal.models.reid import ReIDNet

__all__ = [
    "create",
    "names",
    "ReIDNet",
    "GroupedBatchNorm",
    "convert_to_grouped_batchnorm",
    "PAPER_BN_BATCH",
    "BatchNormLayoutError",
    "bn_groups_for",
    "resolve_bn_groups",
    "load_pretrained",
    "PRETRAINED_CHOICES",
    "PretrainedError",
    "PretrainedNotFoundError",
    "PretrainedWeights",
    "hub_checkpoint_dir",
    "resolve_pretrained",
]
