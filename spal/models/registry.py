"""Backbone registry: ``create(arch, ...)`` builds a ``ReIDNet`` by name; ``names()`` lists the choices;
``resolve_pretrained(arch, pretrained)`` finds the ImageNet file a run loads (SPEC 3.8)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spal.models.norm import convert_to_grouped_batchnorm
from spal.models.pretrained import (
    PretrainedNotFoundError,
    PretrainedWeights,
    find_in_hub_cache,
    load_pretrained,
)
from spal.models.reid import ReIDNet
from spal.models.resnet import ResNetTrunk, resnet18_trunk, resnet50_trunk, set_last_stride
from spal.models.resnet_ibn import resnet50_ibn_a_trunk

__all__ = ["create", "names", "resolve_pretrained", "PRETRAINED_CHOICES"]

#: The words ``--pretrained`` takes besides a path: ``none`` (random weights on purpose) and ``imagenet`` (the
#: architecture's ImageNet file from torch's hub cache). Not given (``None``): ``imagenet`` for the ResNet-50
#: backbones, random weights for ResNet-18 (the small CPU backbone), as SPEC 3.8 says.
PRETRAINED_CHOICES = ("none", "imagenet")


@dataclass(frozen=True)
class _Arch:
    build: Callable[[], ResNetTrunk]
    files: tuple[str, ...]  # the ImageNet file names looked for in the hub cache, preferred first
    source: str  # where to download them
    imagenet_by_default: bool  # loads ImageNet weights when --pretrained is not given

    @property
    def weights(self) -> str:
        """What to download for --pretrained, named in the missing-file error."""
        return f"download {' or '.join(self.files)} ({self.source}) and pass --pretrained PATH"


_TORCHVISION = "https://download.pytorch.org/models/"
_ARCHS: dict[str, _Arch] = {
    "resnet18": _Arch(resnet18_trunk, ("resnet18-f37072fd.pth",), _TORCHVISION + "resnet18-f37072fd.pth", False),
    "resnet50": _Arch(resnet50_trunk, ("resnet50-0676ba61.pth",), _TORCHVISION + "resnet50-0676ba61.pth", True),
    # IBN-Net's release file, or the older name SpCL loads (SPEC 2).
    "resnet50_ibn_a": _Arch(
        resnet50_ibn_a_trunk,
        ("resnet50_ibn_a-d9d0bb7b.pth", "resnet50_ibn_a.pth.tar"),
        "https://github.com/XingangPan/IBN-Net/releases",
        True,
    ),
}


def names() -> list[str]:
    """The architecture names ``create`` accepts."""
    return list(_ARCHS)


def _spec(arch: str) -> _Arch:
    if arch not in _ARCHS:
        raise ValueError(f"unknown architecture {arch!r}: choose one of {', '.join(names())}")
    return _ARCHS[arch]


def resolve_pretrained(arch: str, pretrained: str | Path | None) -> PretrainedWeights | None:
    """The weight file a run of ``arch`` loads, named and hashed; ``None`` for random weights (SPEC 3.8).

    Args:
        pretrained: a path; ``"none"`` (random weights on purpose); ``"imagenet"`` (the architecture's file from
            torch's hub cache); or ``None`` (not given): ``"imagenet"`` for ``resnet50`` / ``resnet50_ibn_a``,
            random weights for ``resnet18``.

    Raises:
        ValueError: unknown ``arch``.
        spal.models.pretrained.PretrainedNotFoundError: the path, or the file in the hub cache, is missing; the
            one-line message names the file, the folder searched and where to download it.
    """
    spec = _spec(arch)
    if pretrained is None:
        pretrained = "imagenet" if spec.imagenet_by_default else "none"
    if pretrained == "none":
        return None
    if pretrained == "imagenet":
        return PretrainedWeights.from_file(find_in_hub_cache(spec.files, f"ImageNet {arch}", spec.source))
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise PretrainedNotFoundError(f"pretrained weights not found at {path}: {spec.weights}")
    return PretrainedWeights.from_file(path)


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
        pretrained: path of a local ImageNet checkpoint for the backbone, loaded strictly; ``None`` keeps random
            initialisation (initialisation draws from torch's global generator, so seed it for reproducible
            weights). A run finds the path with :func:`resolve_pretrained`.
        last_stride: stride of the last stage, 1 (16 x 8 map at 256 x 128 input, the paper's) or 2.
        bn_groups: ``K`` > 1 replaces every BatchNorm by ``GroupedBatchNorm(groups=K)``: in training mode the
            batch is normalised in ``K`` equal groups, emulating ``K`` GPUs; state dict keys do not change.

    Raises:
        ValueError: unknown ``arch``, bad ``last_stride`` or ``bn_groups``, or an unusable checkpoint.
        FileNotFoundError: ``pretrained`` is not a file.
    """
    spec = _spec(arch)
    if bn_groups < 1:
        raise ValueError(f"bn_groups must be >= 1, got {bn_groups}")
    if pretrained is not None and not Path(pretrained).expanduser().is_file():
        # Checked before building, so that a wrong path fails at once.
        raise PretrainedNotFoundError(f"pretrained weights not found at {pretrained}: {spec.weights}")
    trunk = spec.build()
    set_last_stride(trunk, last_stride)
    if pretrained is not None:
        load_pretrained(trunk, pretrained, spec.weights)
    model = ReIDNet(trunk)
    convert_to_grouped_batchnorm(model, bn_groups)
    return model
