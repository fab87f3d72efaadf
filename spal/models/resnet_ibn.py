"""IBN-Net "a" ResNet-50 (Pan et al., "Two at Once: Enhancing Learning and Generalization Capacities via
IBN-Net", ECCV 2018).

IBN-a changes one thing in ResNet-50: in every bottleneck block of stages 1-3 (``layer1`` .. ``layer3``), the
BatchNorm after the first 1x1 convolution becomes an IBN layer that normalises the first half of the channels
with InstanceNorm (affine) and the other half with BatchNorm. Stage 4 and the stem are unchanged. Instance
normalisation in the shallow layers removes appearance (colour, contrast) variation, which helps cross-domain
person re-identification.

Module names follow the IBN-Net release (``bn1.IN`` / ``bn1.BN`` inside IBN blocks, torchvision names
elsewhere) so that its ImageNet checkpoint ``resnet50_ibn_a.pth.tar`` loads without renaming.
"""

from __future__ import annotations

import torch
from torch import nn

from spal.models.resnet import ResNetTrunk

__all__ = ["IBN", "BottleneckIBN", "resnet50_ibn_a_trunk"]


class IBN(nn.Module):
    """Instance-Batch Normalisation of ``(B, planes, H, W)`` inputs.

    Channels ``[0, planes // 2)`` go through ``InstanceNorm2d(affine=True)``, the rest through
    ``BatchNorm2d``; the two halves are concatenated back in the same order.
    """

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.half = planes // 2
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat((self.IN(first), self.BN(second)), dim=1)


class BottleneckIBN(nn.Module):
    """ResNet bottleneck (1x1, 3x3 with ``stride``, 1x1 expanding by 4); IBN as its first norm if ``ibn``.

    Input ``(B, inplanes, H, W)``; output ``(B, 4 * planes, H / stride, W / stride)``.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, ibn: bool = False) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = IBN(planes) if ibn else nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out_planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _stage(inplanes: int, planes: int, blocks: int, stride: int, ibn: bool) -> nn.Sequential:
    layers = [BottleneckIBN(inplanes, planes, stride=stride, ibn=ibn)]
    layers += [BottleneckIBN(planes * BottleneckIBN.expansion, planes, ibn=ibn) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _init_weights(module: nn.Module) -> None:
    """He (fan-out) initialisation for convolutions, weight 1 / bias 0 for every normalisation layer."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet50_ibn_a_trunk() -> ResNetTrunk:
    """Randomly initialised IBN-a ResNet-50 trunk (2048 output channels, stage blocks 3-4-6-3)."""
    conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
    bn1 = nn.BatchNorm2d(64)
    layers = (
        _stage(64, 64, 3, stride=1, ibn=True),
        _stage(256, 128, 4, stride=2, ibn=True),
        _stage(512, 256, 6, stride=2, ibn=True),
        _stage(1024, 512, 3, stride=2, ibn=False),
    )
    trunk = ResNetTrunk(conv1, bn1, layers, out_channels=2048)
    _init_weights(trunk)
    return trunk
