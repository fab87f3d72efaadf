"""ResNet trunks (everything before global pooling) on torchvision's ResNet, with a settable last stride.

torchvision builds the network with random initialisation only: no ``weights=`` argument is ever passed, so
nothing is downloaded. ImageNet weights come from a local file (see ``spal.models.pretrained``).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

__all__ = ["ResNetTrunk", "resnet18_trunk", "resnet50_trunk", "set_last_stride"]


class ResNetTrunk(nn.Module):
    """The convolutional part of a ResNet: stem, then ``layer1`` .. ``layer4``; no pooling, no classifier.

    Sub-module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1`` ...), so an ImageNet state
    dict loads into it directly once its ``fc.*`` entries are dropped.

    Input ``(B, 3, H, W)`` float; output ``(B, out_channels, H/16, W/16)`` with last stride 1
    (``(B, out_channels, H/32, W/32)`` with last stride 2).
    """

    def __init__(
        self,
        conv1: nn.Module,
        bn1: nn.Module,
        layers: tuple[nn.Module, nn.Module, nn.Module, nn.Module],
        out_channels: int,
    ) -> None:
        super().__init__()
        self.conv1 = conv1
        self.bn1 = bn1
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.out_channels = out_channels

    @classmethod
    def from_torchvision(cls, net: torchvision.models.ResNet) -> ResNetTrunk:
        """Take the stem and the four stages of a torchvision ResNet (its pooling and ``fc`` are left out)."""
        return cls(
            net.conv1,
            net.bn1,
            (net.layer1, net.layer2, net.layer3, net.layer4),
            out_channels=net.fc.in_features,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def set_last_stride(trunk: ResNetTrunk, stride: int) -> None:
    """Set the stride of ``layer4``'s first block (its strided conv and its downsample conv) to ``stride``.

    Stride 1 keeps a 16 x 8 final map at 256 x 128 input instead of 8 x 4 (Luo et al.'s "last stride" trick,
    used by SpCL and SPAL). Only convolutions that stride in the stock network are changed.
    """
    if stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {stride}")
    first_block = trunk.layer4[0]
    for module in first_block.modules():
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (stride, stride)


def resnet18_trunk() -> ResNetTrunk:
    """Randomly initialised ResNet-18 trunk (512 output channels): the small CPU backbone."""
    return ResNetTrunk.from_torchvision(torchvision.models.resnet18())


def resnet50_trunk() -> ResNetTrunk:
    """Randomly initialised ResNet-50 trunk (2048 output channels)."""
    return ResNetTrunk.from_torchvision(torchvision.models.resnet50())
