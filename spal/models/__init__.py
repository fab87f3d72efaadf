"""Backbones for person re-identification: ``create(arch, pretrained=PATH | None, ...)`` and ``names()``."""

from spal.models.norm import GroupedBatchNorm, convert_to_grouped_batchnorm
from spal.models.pretrained import load_pretrained
from spal.models.registry import create, names
from spal.models.reid import ReIDNet

__all__ = [
    "create",
    "names",
    "ReIDNet",
    "GroupedBatchNorm",
    "convert_to_grouped_batchnorm",
    "load_pretrained",
]
