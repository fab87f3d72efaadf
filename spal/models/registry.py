"""Backbone registry: ``create(arch, ...)`` builds a ``ReIDNet`` by name; ``names()`` lists the choices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spal.models.norm import convert_to_grouped_batchnorm
from spal.models.pretrained import load_pretrained
from spal.models.reid import ReIDNet
from spal.models.resnet import ResNetTrunk, resnet18_trunk, resnet50_trunk, set_last_stride
from spal.models.resnet_ibn import resnet50_ibn_a_trunk

__all__ = ["create", "names"]


@dataclass(frozen=True)
class _Arch:
    build: Callable[[], ResNetTrunk]
    weights: str  # what to download for --pretrained, named in the missing-file error


_TORCHVISION = "https://download.pytorch.org/models/"
_ARCHS: dict[str, _Arch] = {
    "resnet18": _Arch(
        resnet18_trunk,
        f"download torchvision's ImageNet resnet18-f37072fd.pth ({_TORCHVISION}) and pass --pretrained PATH",
    ),
    "resnet50": _Arch(
        resnet50_trunk,
        f"download torchvision's ImageNet resnet50-0676ba61.pth ({_TORCHVISION}) and pass --pretrained PATH",
    ),
    "resnet50_ibn_a": _Arch(
        resnet50_ibn_a_trunk,
        "download resnet50_ibn_a.pth.tar (IBN-Net release, https://github.com/XingangPan/IBN-Net) "
        "and pass --pretrained PATH",
    ),
}


def names() -> list[str]:
    """The architecture names ``create`` accepts."""
    return list(_ARCHS)


def create(
    arch: str,
    pretrained: str | Path | None = None,
    last_stride: int = 1,
    bn_groups: int = 1,
) -> ReIDNet:
    """Build a re-identification network.

    Args:
        arch: one of ``names()``: ``"resnet18"`` (small CPU backbone, 512-d), ``"resnet50"`` (2048-d),
            ``"resnet50_ibn_a"`` (2048-d).
        pretrained: path of a local ImageNet checkpoint for the backbone; ``None`` keeps random initialisation
            (initialisation draws from torch's global generator, so seed it for reproducible weights).
        last_stride: stride of the last stage, 1 (16 x 8 map at 256 x 128 input, the paper's) or 2.
        bn_groups: ``K`` > 1 replaces every BatchNorm by ``GroupedBatchNorm(groups=K)``: in training mode the
            batch is normalised in ``K`` equal groups, emulating ``K`` GPUs; state dict keys do not change.

    Raises:
        ValueError: unknown ``arch``, bad ``last_stride`` or ``bn_groups``, or an unusable checkpoint.
        FileNotFoundError: ``pretrained`` is not a file.
    """
    if arch not in _ARCHS:
        raise ValueError(f"unknown architecture {arch!r}: choose one of {', '.join(names())}")
    if bn_groups < 1:
        raise ValueError(f"bn_groups must be >= 1, got {bn_groups}")
    spec = _ARCHS[arch]
    if pretrained is not None and not Path(pretrained).expanduser().is_file():
        # Checked before building, so that a wrong path fails at once.
        raise FileNotFoundError(f"pretrained weights not found at {pretrained}: {spec.weights}")
    trunk = spec.build()
    set_last_stride(trunk, last_stride)
    if pretrained is not None:
        load_pretrained(trunk, pretrained, spec.weights)
    model = ReIDNet(trunk)
    convert_to_grouped_batchnorm(model, bn_groups)
    return model
