"""One network for corners and edges: a CNN backbone, a corner decoder, and an edge classifier.

CornerFormer (Tian, Li, Huang, Ling, Yang and Hu, "Boosting Corner Representation for Fine-Grained Structured
Reconstruction", arXiv 2304.07072, 2023) trains corner detection and edge prediction jointly and lets them
**share features at several granularities**, where its baseline HEAT (Chen, Qian and Furukawa, "HEAT: Holistic
Edge Attention Transformer for Structured Reconstruction", CVPR 2022, arXiv 2111.15143) shares only the
backbone between separate corner and edge models. Neither the paper's layers nor its fusion points are
available to us; this module is **our reconstruction**, sized for a CPU, with plain attention instead of
HEAT's deformable attention:

- backbone: three conv levels at strides 1, 2, 4 (``widths``);
- corner decoder: one transformer encoder layer over the stride-4 level (HEAT's encoder, plain attention),
  then upsampling with the backbone's skips added (U-Net/FPN style) to full resolution, and a 1x1 conv to
  ``corner_channels`` heatmaps (1: HEAT; 4: CornerFormer's direction channels, ``faceops.structure.targets``);
- edge classifier: an edge token holds the sinusoidal encodings of its two corners (HEAT) and features
  sampled at ``edge_points`` points along the edge from three maps. ``feature_sharing="backbone"`` (HEAT):
  the maps are the edge branch's own projections of the backbone levels, its own encoder layer on the
  deepest; ``"multiscale"`` (CornerFormer, reconstructed): the maps are the corner decoder's features at
  the three granularities (full-resolution decoder output, stride-2 decoder output, encoder memory), so
  both losses train them. Stage 1 scores every candidate alone (HEAT's edge filtering); stage 2 lets the
  kept candidates attend to each other, each told whether its label is known (positive, negative) or not
  (HEAT's masked training and iterative decoding, ``faceops.structure.inference``).

HEAT's second, geometry-only decoder is left out. Variants register in :mod:`faceops.models`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from faceops.models import register_model

__all__ = ["CornerEdgeNet", "EdgeScores", "corner_pairs", "cornerformer_base", "cornerformer_tiny"]

Sharing = Literal["backbone", "multiscale"]
#: Prior probability of a corner pixel at initialisation (the heatmap bias starts at its logit).
_CORNER_PRIOR = 0.01


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _sine_positions(height: int, width: int, dim: int, device: torch.device) -> torch.Tensor:
    """``[H * W, dim]`` 2-D sinusoidal position encoding (half the channels for y, half for x)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return torch.cat([_sine(ys.reshape(-1, 1) / height, dim // 2), _sine(xs.reshape(-1, 1) / width, dim // 2)], 1)


def _sine(values: torch.Tensor, dim: int) -> torch.Tensor:
    """``[..., 1]`` values in [0, 1] -> ``[..., dim]`` sines and cosines of ``dim // 2`` frequencies."""
    freqs = torch.pow(2.0, torch.arange(dim // 2, device=values.device, dtype=torch.float32)) * math.pi
    angles = values.float() * freqs
    return torch.cat([angles.sin(), angles.cos()], -1)


class _Encoder(nn.Module):
    """One transformer encoder layer over a feature map's pixels (with sine positions)."""

    def __init__(self, dim: int, heads: int, layers: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2) + _sine_positions(h, w, c, x.device)  # [B, HW, C]
        return self.layers(tokens).transpose(1, 2).reshape(b, c, h, w)


@dataclass(frozen=True)
class EdgeScores:
    """Stage-1 results for the candidate edges of a batch.

    Attributes:
        pairs: ``[P, 2]`` corner-index pairs ``i < j`` (the same for every image).
        valid: ``[B, P]`` bool, both corners exist in that image.
        tokens: ``[B, P, D]`` edge tokens.
        logits: ``[B, P, 2]`` stage-1 logits (no edge, edge).
    """

    pairs: torch.Tensor
    valid: torch.Tensor
    tokens: torch.Tensor
    logits: torch.Tensor


def _gather_points(maps: torch.Tensor, points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``maps`` [B, E, h, w] (a map of an image of ``size`` (H, W), h = H / stride) at the pixels nearest to
    ``points`` [B, P, K, 2] (x, y in image pixels) -> ``[B, E, P, K]``.

    Nearest pixel rather than bilinear: corners sit on pixels, and on a CPU a gather's backward costs a
    fraction of ``grid_sample``'s.
    """
    b, e, h, w = maps.shape
    x = ((points[..., 0] + 0.5) * (w / size[1])).long().clamp(0, w - 1)
    y = ((points[..., 1] + 0.5) * (h / size[0])).long().clamp(0, h - 1)
    index = (y * w + x).reshape(b, 1, -1).expand(-1, e, -1)  # [B, E, P * K]
    return maps.reshape(b, e, h * w).gather(2, index).reshape(b, e, *points.shape[1:3])


def corner_pairs(counts: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs ``i < j`` of ``n`` padded corners and which exist per image (``counts`` [B] corners each).

    Returns:
        ``pairs`` [n(n-1)/2, 2] and ``valid`` [B, n(n-1)/2] bool.
    """
    pairs = torch.triu_indices(n, n, offset=1, device=counts.device).T  # [P, 2]
    valid = (pairs[None, :, 1] < counts[:, None]) & (pairs[None, :, 0] < counts[:, None])
    return pairs, valid


class CornerEdgeNet(nn.Module):
    """Corners and edges of a planar graph from an image (module docstring).

    Args:
        widths: channels of the backbone levels at strides 1, 2, 4.
        corner_channels: heatmap channels (1 = HEAT, 4 = direction channels).
        feature_sharing: ``"backbone"`` (HEAT) or ``"multiscale"`` (CornerFormer, reconstructed).
        dim: width of the edge tokens and of the transformer layers.
        heads: attention heads.
        encoder_layers, edge_layers: transformer layers of the corner encoder and of stage 2.
        edge_channels: channels per map sampled along an edge.
        edge_points: samples along an edge (both corners included).
        position_dim: sinusoidal encoding width per corner.
    """

    def __init__(
        self,
        widths: tuple[int, int, int] = (16, 32, 64),
        *,
        corner_channels: int = 4,
        feature_sharing: Sharing = "multiscale",
        dim: int = 64,
        heads: int = 4,
        encoder_layers: int = 1,
        edge_layers: int = 1,
        edge_channels: int = 16,
        edge_points: int = 8,
        position_dim: int = 32,
    ) -> None:
        super().__init__()
        if corner_channels < 1 or feature_sharing not in ("backbone", "multiscale") or edge_points < 2:
            raise ValueError(f"need corner_channels >= 1, feature_sharing 'backbone' or 'multiscale', edge_points >= 2;"
                             f"got {corner_channels}, {feature_sharing!r}, {edge_points}")  # fmt: skip
        w1, w2, w3 = widths
        self.corner_channels, self.feature_sharing, self.edge_points = corner_channels, feature_sharing, edge_points
        self.position_dim = position_dim
        self.backbone = nn.ModuleList([nn.Sequential(_conv(3, w1), _conv(w1, w1)),
                                       nn.Sequential(_conv(w1, w2, 2), _conv(w2, w2)),
                                       nn.Sequential(_conv(w2, w3, 2), _conv(w3, w3))])  # fmt: skip
        self.encoder = _Encoder(w3, heads, encoder_layers)
        self.lateral2, self.lateral1 = nn.Conv2d(w3, w2, 1), nn.Conv2d(w2, w1, 1)
        self.up2, self.up1 = _conv(w2, w2), _conv(w1, w1)
        self.corner_head = nn.Conv2d(w1, corner_channels, 1)
        nn.init.constant_(self.corner_head.bias, math.log(_CORNER_PRIOR / (1 - _CORNER_PRIOR)))
        if feature_sharing == "backbone":
            self.edge_encoder = _Encoder(w3, heads, encoder_layers)
        sources = (w1, w2, w3)  # backbone levels, or decoder output / decoder s2 / memory: same widths
        self.edge_maps = nn.ModuleList([nn.Conv2d(c, edge_channels, 1) for c in sources])
        self.edge_in = nn.Sequential(nn.Linear(3 * edge_channels * edge_points + 2 * position_dim, dim), nn.ReLU(),
                                     nn.Linear(dim, dim))  # fmt: skip
        self.filter_head = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Linear(dim // 2, 2))
        self.label_embed = nn.Embedding(3, dim)  # 0 known negative, 1 known positive, 2 unknown
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.relational = nn.TransformerEncoder(layer, edge_layers, enable_nested_tensor=False)
        self.relation_head = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Linear(dim // 2, 2))

    def backbone_parameters(self):
        """The CNN backbone's parameters (``faceops.models.param_groups``; ``fit`` clips their gradient)."""
        return self.backbone.parameters()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images`` [B, 3, H, W] normalised (H, W divisible by 4) -> ``corners`` [B, C, H, W] logits and the
        three maps the edge classifier samples, ``edge_s1`` [B, E, H, W], ``edge_s2``, ``edge_s4``."""
        f1 = self.backbone[0](images)
        f2 = self.backbone[1](f1)
        f4 = self.backbone[2](f2)
        memory = self.encoder(f4)
        d2 = self.up2(F.interpolate(self.lateral2(memory), size=f2.shape[-2:], mode="nearest") + f2)
        d1 = self.up1(F.interpolate(self.lateral1(d2), size=f1.shape[-2:], mode="nearest") + f1)
        levels = (d1, d2, memory) if self.feature_sharing == "multiscale" else (f1, f2, self.edge_encoder(f4))
        maps = [proj(level) for proj, level in zip(self.edge_maps, levels)]
        return {"corners": self.corner_head(d1), "edge_s1": maps[0], "edge_s2": maps[1], "edge_s4": maps[2]}

    def score_edges(self, outputs: dict[str, torch.Tensor], corners: torch.Tensor, counts: torch.Tensor) -> EdgeScores:
        """Stage 1: a token and logits for every pair of each image's corners.

        Args:
            outputs: this model's outputs for the images.
            corners: ``[B, N, 2]`` (x, y) pixels, padded; ``counts`` [B] how many are real.
        """
        b, n = corners.shape[:2]
        pairs, valid = corner_pairs(counts, n)
        height, width = outputs["corners"].shape[-2:]
        ends = corners[:, pairs]  # [B, P, 2, 2]
        t = torch.linspace(0, 1, self.edge_points, device=corners.device)[None, None, :, None]
        points = ends[:, :, :1] + (ends[:, :, 1:] - ends[:, :, :1]) * t  # [B, P, K, 2]
        sampled = [_gather_points(outputs[key], points, (height, width)) for key in ("edge_s1", "edge_s2", "edge_s4")]
        features = torch.cat(sampled, 1).permute(0, 2, 1, 3).reshape(b, pairs.shape[0], -1)  # [B, P, 3 E K]
        scale = torch.tensor([width, height], device=corners.device, dtype=points.dtype)
        position = _sine((ends / scale).reshape(b, pairs.shape[0], 4, 1), self.position_dim // 2)  # [B, P, 4, D/2]
        tokens = self.edge_in(torch.cat([features, position.reshape(b, pairs.shape[0], -1)], -1))
        return EdgeScores(pairs, valid, tokens, self.filter_head(tokens))

    def relate_edges(self, tokens: torch.Tensor, states: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """Stage 2: ``[B, K, 2]`` logits of the kept candidates ``tokens`` [B, K, D], given ``states`` [B, K]
        (0/1 known label, 2 unknown); ``padding`` [B, K] True where there is no candidate."""
        # a row with no candidate attends to its first (padding) slot, so attention stays finite
        empty = padding.all(1, keepdim=True) & (torch.arange(padding.shape[1], device=padding.device) == 0)
        x = self.relational(tokens + self.label_embed(states), src_key_padding_mask=padding & ~empty)
        return self.relation_head(x)


def _create(name: str, defaults: dict[str, Any], **kwargs: Any) -> CornerEdgeNet:
    if kwargs.pop("pretrained", False):
        raise ValueError(f"{name} has no released weights; train it with the structure-train stage")
    return CornerEdgeNet(**{**defaults, **kwargs})


@register_model
def cornerformer_tiny(pretrained: bool = False, **kwargs: Any) -> CornerEdgeNet:
    """CPU size (ours): levels 16/32/64, tokens 64 wide, one layer each, 6 samples of 8 channels per edge map."""
    return _create("cornerformer_tiny", dict(widths=(16, 32, 64), dim=64, heads=4, edge_channels=8, edge_points=6),
                   pretrained=pretrained, **kwargs)  # fmt: skip


@register_model
def cornerformer_base(pretrained: bool = False, **kwargs: Any) -> CornerEdgeNet:
    """Larger (ours, for 256 px images on a GPU): levels 32/64/128, tokens 128 wide, 2 + 2 layers."""
    return _create("cornerformer_base", dict(widths=(32, 64, 128), dim=128, heads=8, encoder_layers=2, edge_layers=2,
                                             edge_channels=32, edge_points=16, position_dim=64),
                   pretrained=pretrained, **kwargs)  # fmt: skip
