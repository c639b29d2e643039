"""SimpleBaseline-style heatmap networks: a timm backbone plus a deconvolution head.

Paper: Xiao et al., "Simple Baselines for Human Pose Estimation and Tracking", ECCV 2018
(https://arxiv.org/abs/1804.06208); SSPCM trains three of these. Written from the paper's
description, no code copied.

The head upsamples the backbone's deepest used feature map with stride-2 deconvolutions (k=4, BN,
ReLU) until the heatmaps are at ``heatmap_stride`` (4 in SimpleBaseline), then a 1x1 conv gives one
map per joint. Variants are ``model_args`` dicts registered in the faceops model registry.
"""

from __future__ import annotations

import math
from typing import Any

import timm
import torch
import torch.nn as nn

from faceops.models import register_model

__all__ = ["HeatmapNet", "sspcm_tiny", "sspcm_resnet18"]


class HeatmapNet(nn.Module):
    """timm backbone -> stride-2 deconvolutions -> 1x1 conv -> [N, J, H/stride, W/stride] heatmaps.

    Args:
        backbone: timm model name (built with ``features_only=True``).
        num_joints: number of heatmaps J.
        feature_index: which backbone feature level to upsample (timm ``out_indices``; -1 = deepest).
        heatmap_stride: input pixels per heatmap pixel (a power of two, below the feature stride).
        deconv_channels: channels of every deconvolution layer.
        pretrained: load the backbone's timm weights.
        backbone_args: extra kwargs for ``timm.create_model`` (e.g. tiny ``channels``).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        num_joints: int = 5,
        *,
        feature_index: int = -1,
        heatmap_stride: int = 4,
        deconv_channels: int = 256,
        pretrained: bool = False,
        backbone_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        out_indices = None if feature_index == -1 else (feature_index,)
        self.backbone = timm.create_model(
            backbone, pretrained=pretrained, features_only=True, out_indices=out_indices, **(backbone_args or {})
        )
        in_channels = self.backbone.feature_info.channels()[-1]
        feature_stride = self.backbone.feature_info.reduction()[-1]
        n_up = math.log2(feature_stride / heatmap_stride)
        if n_up < 0 or not n_up.is_integer():
            raise ValueError(
                f"heatmap_stride={heatmap_stride} must be the feature stride {feature_stride} divided by a power of "
                "two; pick another heatmap_stride or feature_index"
            )
        layers: list[nn.Module] = []
        for _ in range(int(n_up)):
            layers += [
                nn.ConvTranspose2d(in_channels, deconv_channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(deconv_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = deconv_channels
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(in_channels, num_joints, 1)
        self.num_joints = num_joints
        self.heatmap_stride = heatmap_stride
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, C, H, W] -> heatmaps [N, J, H / stride, W / stride]."""
        return self.final(self.deconv(self.backbone(x)[-1]))


def _create_heatmap_net(pretrained: bool, **kwargs: Any) -> HeatmapNet:
    return HeatmapNet(pretrained=pretrained, **kwargs)


@register_model
def sspcm_resnet18(pretrained: bool = False, **kwargs: Any) -> HeatmapNet:
    """SimpleBaseline ResNet-18: 3 deconvs of 256 channels, stride-4 heatmaps (SSPCM's COCO config)."""
    model_args: dict[str, Any] = dict(backbone="resnet18", deconv_channels=256)
    return _create_heatmap_net(pretrained, **dict(model_args, **kwargs))


@register_model
def sspcm_tiny(pretrained: bool = False, **kwargs: Any) -> HeatmapNet:
    """CPU config: 1-block ResNet (16/32/64/128 ch), stride-16 features, 2 deconvs of 64 ch, stride-4 heatmaps."""
    model_args: dict[str, Any] = dict(
        backbone="resnet18",
        feature_index=3,
        deconv_channels=64,
        backbone_args=dict(layers=(1, 1, 1, 1), channels=(16, 32, 64, 128), stem_width=16),
    )
    return _create_heatmap_net(pretrained, **dict(model_args, **kwargs))
