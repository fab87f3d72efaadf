"""The re-identification network: a ResNet trunk, global average pooling and a BatchNorm1d head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spal.models.resnet import ResNetTrunk

__all__ = ["ReIDNet"]


class ReIDNet(nn.Module):
    """Trunk -> global average pooling -> ``BatchNorm1d(feature_dim)`` -> L2 normalisation (SPEC section 1).

    The head BatchNorm starts at weight 1, bias 0 and its bias is frozen (``requires_grad=False``), as in
    SpCL's model and the "BNNeck" of Luo et al. (Bag of Tricks for ReID, 2019). There is no classifier: the
    cluster-level memory plays that role.

    Input ``(B, 3, H, W)`` normalised float images; output ``(B, feature_dim)`` float features of unit L2
    norm, in training and in eval mode alike.
    """

    def __init__(self, backbone: ResNetTrunk) -> None:
        super().__init__()
        self.backbone = backbone
        self.feat_bn = nn.BatchNorm1d(backbone.out_channels)
        nn.init.ones_(self.feat_bn.weight)
        nn.init.zeros_(self.feat_bn.bias)
        self.feat_bn.bias.requires_grad_(False)

    @property
    def feature_dim(self) -> int:
        """Length ``d`` of the output features (512 for ResNet-18, 2048 for ResNet-50 and IBN-a)."""
        return self.feat_bn.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.backbone(images).mean(dim=(2, 3))
        return F.normalize(self.feat_bn(pooled), dim=1)
