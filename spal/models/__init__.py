"""Backbones for person re-identification: ``create(arch, pretrained=PATH | None, ...)`` and ``names()``."""

from spal.models.norm import (
    PAPER_BN_BATCH,
    BatchNormLayoutError,
    GroupedBatchNorm,
    bn_groups_for,
    convert_to_grouped_batchnorm,
    resolve_bn_groups,
)
from spal.models.pretrained import load_pretrained
from spal.models.registry import create, names
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
]
