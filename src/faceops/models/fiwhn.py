"""FIWHN: a lightweight super-resolution network of interacting CNN blocks and an efficient transformer.

Paper: Wenjie Li, Juncheng Li, Guangwei Gao, Weihong Deng et al., "Efficient
Image Super-Resolution with Feature Interaction Weighted Hybrid Network", IEEE Transactions on Multimedia
2024, arXiv:2212.14181 (https://arxiv.org/abs/2212.14181). Only the abstract was readable to us; the layer
facts below come from the authors' code (github.com/24wenjie-li/FIWHN, ``model/FIWHNx{2,3,4}.py`` and
``model/common.py``, read at commit c7b1739). This file is written independently, with our own names; the
map to the official names (for their released weights) is :func:`official_key`.

Layout (C channels, scale s, RGB input in [0, 255]):

- mean shift (a 1x1 conv subtracting 255 x the DIV2K mean), head conv 3x3 3 -> C;
- WIRW unit (:class:`WeightedResidualUnit`, in = out): 1x1 C -> 2C, ReLU, 1x1 2C -> C/2, 3x3 C/2 -> C,
  shuffle attention; ``out = w_res * attention(body(x)) + w_skip * x`` (learned scalars); the WCRW unit is
  the same with a 3x3 conv on the skip path where the widths differ (2C -> C);
- self-calibrating fusion gate (:class:`FusionGate`): the mean of two ``sigmoid(relu(MLP(.)))`` branches over
  the global mean and the global standard deviation of each channel (so gate values lie in [0.5, 1));
- WDIB (:class:`InteractionBlock`): two branches of WIRW units that exchange gated features, with
  distillation connections (1x1 conv + sigmoid of an early feature) and a WCRW fusion of both branches;
- FSWG (:class:`FeatureShuffleGroup`): three WDIBs whose outputs are merged by grouped 3x3 convs + channel
  shuffle, ``out = w_out * (merged + o3) + w_in * x`` (scalars start at 0.5); it runs **twice with the
  same weights**, the second time with the transformer branch's output added before its second block;
- transformer branch: two :class:`EfficientTransformer` blocks over 3x3 neighbourhoods (unfold -> tokens
  of width 9C -> attention within 4 contiguous token chunks -> MLP -> fold that *sums* overlaps);
- reconstruction: 1x1 merge of both branches, 3x3 conv, 3x3 conv C -> 3s^2 + pixel shuffle, plus a global
  skip (3x3 conv on the mean-shifted input -> 3x3 conv -> pixel shuffle), then the mean added back.

Kept from the official code where it differs from a textbook reading (the released weights depend on it):
the attention scale is ``(9C / heads) ** -0.5`` although heads are ``9C / 2 / heads`` wide (the scale is
computed before the 9C -> 9C/2 reduction); chunks are ``N // 4`` tokens long, so a token count that is not
a multiple of 4 gives a fifth, shorter chunk; the mean-shift convs are ordinary trainable parameters (the
official ``requires_grad = False`` sets a module attribute and freezes nothing). With C = 32 the network
has 725,906 (x4), 713,768 (x3) and 705,098 (x2) parameters, as many float elements as the official
checkpoints hold.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from faceops.models._registry import register_model

__all__ = [
    "DIV2K_MEAN",
    "FIWHN",
    "EfficientAttention",
    "EfficientTransformer",
    "FeatureShuffleGroup",
    "FusionGate",
    "InteractionBlock",
    "MeanShift",
    "ShuffleAttention",
    "WeightedResidualUnit",
    "channel_shuffle",
    "checkpoint_filter_fn",
    "chunked_attention",
    "fold_neighbourhoods",
    "official_key",
    "spatial_std",
    "unfold_neighbourhoods",
]

#: RGB mean of the DIV2K training images (fractions of 255) that the mean shift removes and adds back.
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


# --------------------------------------------------------------------------------------------------
# helpers


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups: [B, C, H, W] -> [B, C, H, W] (channel g*k+i -> i*G+g)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def spatial_std(x: torch.Tensor) -> torch.Tensor:
    """Population standard deviation of each channel over its pixels: [B, C, H, W] -> [B, C, 1, 1]."""
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    return centred.pow(2).mean(dim=(2, 3), keepdim=True).sqrt()


def unfold_neighbourhoods(x: torch.Tensor) -> torch.Tensor:
    """Every pixel's zero-padded 3x3 neighbourhood as a token: [B, C, H, W] -> [B, H*W, 9C]."""
    return F.unfold(x, kernel_size=3, padding=1).transpose(1, 2)


def fold_neighbourhoods(tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Inverse layout of :func:`unfold_neighbourhoods` that **sums** overlaps: [B, H*W, 9C] -> [B, C, H, W].

    An interior pixel is covered by 9 neighbourhoods, an edge pixel by 6, a corner by 4, and receives the
    sum of its 9, 6 or 4 copies (FIWHN does not divide by the count).
    """
    return F.fold(tokens.transpose(1, 2), output_size=size, kernel_size=3, padding=1)


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, chunks: int, scale: float) -> torch.Tensor:
    """Softmax attention restricted to contiguous token chunks of ``N // chunks`` tokens.

    Args:
        q, k, v: [B, heads, N, d]; N >= ``chunks``.
        chunks: number of chunks (4 in FIWHN); when N is not a multiple, a last shorter chunk holds the rest.
        scale: multiplies the query-key products before the softmax.

    Returns:
        [B, heads, N, d], equal to full attention with a block-diagonal mask over the chunks.

    Raises:
        ValueError: fewer tokens than chunks (the official code fails there too).
    """
    n = q.shape[-2]
    if n < chunks:
        raise ValueError(f"chunked attention needs at least {chunks} tokens (an LR image of >= {chunks} pixels), "
                         f"got {n}")  # fmt: skip
    length = n // chunks
    parts = [
        F.scaled_dot_product_attention(qc, kc, vc, scale=scale)
        for qc, kc, vc in zip(q.split(length, -2), k.split(length, -2), v.split(length, -2), strict=True)
    ]
    return torch.cat(parts, dim=-2)


def _cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic-convolution kernel (a = -0.5, as PIL's bicubic) at distances ``x``."""
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


# --------------------------------------------------------------------------------------------------
# blocks, bottom up


class MeanShift(nn.Conv2d):
    """A 1x1 conv that adds ``sign * rgb_range * mean`` per channel (identity weights); trainable as official."""

    def __init__(self, rgb_range: float, mean: tuple[float, float, float], sign: int) -> None:
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(mean))


class ShuffleAttention(nn.Module):
    """SA-Net shuffle attention: per group, half the channels get a channel gate, half a spatial gate.

    Args:
        channels: C, divisible by ``2 * groups``.
        groups: channel groups G; each half-group has ``C / (2G)`` channels with their own gate parameters
            (shared across groups), the spatial gate normalises each channel with GroupNorm.
    """

    def __init__(self, channels: int, groups: int = 4) -> None:
        super().__init__()
        if channels % (2 * groups):
            raise ValueError(f"shuffle attention needs channels divisible by {2 * groups}, got {channels}")
        half = channels // (2 * groups)
        self.groups = groups
        self.channel_weight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.channel_bias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.spatial_weight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.spatial_bias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.norm = nn.GroupNorm(half, half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        grouped = x.reshape(b * self.groups, c // self.groups, h, w)
        for_channel, for_space = grouped.chunk(2, dim=1)
        pooled = for_channel.mean(dim=(2, 3), keepdim=True)
        gated_channel = for_channel * torch.sigmoid(self.channel_weight * pooled + self.channel_bias)
        gated_space = for_space * torch.sigmoid(self.spatial_weight * self.norm(for_space) + self.spatial_bias)
        out = torch.cat([gated_channel, gated_space], dim=1).reshape(b, c, h, w)
        return channel_shuffle(out, 2)


class WeightedResidualUnit(nn.Module):
    """WIRW (``in == out``) / WCRW (``out < in``): ``w_res * SA(body(x)) + w_skip * skip(x)``.

    Args:
        in_channels: input width ``c``; the body is 1x1 c -> 2c, ReLU, 1x1 2c -> c/2, 3x3 c/2 -> out.
        out_channels: output width (default ``in_channels``); when it differs, the skip path is a 3x3 conv.
        act_layer: the body's activation.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, act_layer: type[nn.Module] = nn.ReLU):
        super().__init__()
        out_channels = out_channels or in_channels
        self.expand = nn.Conv2d(in_channels, 2 * in_channels, 1)
        self.act = act_layer()
        self.squeeze = nn.Conv2d(2 * in_channels, in_channels // 2, 1)
        self.conv = nn.Conv2d(in_channels // 2, out_channels, 3, padding=1)
        self.attention = ShuffleAttention(out_channels)
        self.skip = nn.Conv2d(in_channels, out_channels, 3, padding=1) if out_channels != in_channels else None
        self.res_weight = nn.Parameter(torch.ones(1))
        self.skip_weight = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = self.attention(self.conv(self.squeeze(self.act(self.expand(x)))))
        return self.res_weight * body + self.skip_weight * (x if self.skip is None else self.skip(x))


class FusionGate(nn.Module):
    """Self-calibrating fusion gate: ``(sigmoid(relu(MLP_m(mean))) + sigmoid(relu(MLP_s(std)))) / 2`` per channel.

    Each MLP is 1x1 C -> C/reduction, ReLU, 1x1 -> C. The ReLU before the sigmoid (official) keeps every
    gate in [0.5, 1). Returns [B, C, 1, 1].
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = channels // reduction
        self.mean_reduce, self.mean_expand = nn.Conv2d(channels, hidden, 1), nn.Conv2d(hidden, channels, 1)
        self.std_reduce, self.std_expand = nn.Conv2d(channels, hidden, 1), nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean_expand(F.relu(self.mean_reduce(x.mean(dim=(2, 3), keepdim=True))))
        std = self.std_expand(F.relu(self.std_reduce(spatial_std(x))))
        return (torch.sigmoid(F.relu(mean)) + torch.sigmoid(F.relu(std))) / 2


class InteractionBlock(nn.Module):
    """WDIB: two branches of WIRW units exchanging gated features, with distillation connections.

    With ``lrelu`` = LeakyReLU(0.05), units ``U``, gates ``g``::

        a = lrelu(U_a1(x)); d_a = a; a = U_a2(a)
        b_in = g_a1(a) * a + x;   a1 = g_b1(x) * x + a
        b = lrelu(U_b1(b_in)); d_b = b; b = U_b2(b)
        b2 = (g_a2(a1) * a1 + b) * sigmoid(distil_b(d_b));   a2 = (g_b2(b) * b + a1) * sigmoid(distil_a(d_a))
        z = [w_a * U_out_a(a2), w_b * U_out_b(b2)]
        out = fuse(z) + sigmoid(fuse_gate(z)) * U_out_b(b2)

    (the last term uses the branch output without its weight, as the official code does).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.unit_a1, self.unit_a2 = WeightedResidualUnit(channels), WeightedResidualUnit(channels)
        self.unit_b1, self.unit_b2 = WeightedResidualUnit(channels), WeightedResidualUnit(channels)
        self.out_a, self.out_b = WeightedResidualUnit(channels), WeightedResidualUnit(channels)
        self.gate_a1, self.gate_b1 = FusionGate(channels), FusionGate(channels)
        self.gate_a2, self.gate_b2 = FusionGate(channels), FusionGate(channels)
        self.distil_a = nn.Conv2d(channels, channels, 1, bias=False)
        self.distil_b = nn.Conv2d(channels, channels, 1, bias=False)
        self.weight_a, self.weight_b = nn.Parameter(torch.ones(1)), nn.Parameter(torch.ones(1))
        self.fuse = WeightedResidualUnit(2 * channels, channels)
        self.fuse_gate = nn.Conv2d(2 * channels, channels, 1, bias=False)
        self.act = nn.LeakyReLU(0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled_a = self.act(self.unit_a1(x))
        a = self.unit_a2(distilled_a)
        b_in = self.gate_a1(a) * a + x
        a1 = self.gate_b1(x) * x + a
        distilled_b = self.act(self.unit_b1(b_in))
        b = self.unit_b2(distilled_b)
        b2 = (self.gate_a2(a1) * a1 + b) * torch.sigmoid(self.distil_b(distilled_b))
        a2 = (self.gate_b2(b) * b + a1) * torch.sigmoid(self.distil_a(distilled_a))
        out_a, out_b = self.out_a(a2), self.out_b(b2)
        both = torch.cat([self.weight_a * out_a, self.weight_b * out_b], dim=1)
        return self.fuse(both) + torch.sigmoid(self.fuse_gate(both)) * out_b


class FeatureShuffleGroup(nn.Module):
    """FSWG: three WDIBs, their outputs merged by grouped 3x3 convs + channel shuffle, weighted residual.

    ``o1, o2, o3`` = the blocks in sequence (``inject`` is added to ``o1`` before the second block);
    ``c1 = shuffle(merge1([o1, o2]))``, ``c2 = shuffle(merge2([c1, o3]))``,
    ``out = w_out * (c2 + o3) + w_in * x`` with both weights starting at 0.5.
    """

    def __init__(self, channels: int, groups: int = 4) -> None:
        super().__init__()
        self.groups = groups
        self.blocks = nn.ModuleList(InteractionBlock(channels) for _ in range(3))
        self.merge1 = nn.Conv2d(2 * channels, channels, 3, padding=1, groups=groups, bias=False)
        self.merge2 = nn.Conv2d(2 * channels, channels, 3, padding=1, groups=groups, bias=False)
        self.output_weight = nn.Parameter(torch.full((1,), 0.5))
        self.input_weight = nn.Parameter(torch.full((1,), 0.5))

    def forward(self, x: torch.Tensor, inject: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, C, H, W] -> (group output, second block's output o2), both [B, C, H, W]."""
        o1 = self.blocks[0](x)
        o2 = self.blocks[1](o1 if inject is None else o1 + inject)
        o3 = self.blocks[2](o2)
        c1 = channel_shuffle(self.merge1(torch.cat([o1, o2], dim=1)), self.groups)
        c2 = channel_shuffle(self.merge2(torch.cat([c1, o3], dim=1)), self.groups)
        return self.output_weight * (c2 + o3) + self.input_weight * x, o2


class EfficientAttention(nn.Module):
    """Attention over tokens of width ``dim``: reduce to dim/2, qkv (no bias), chunked heads, project back.

    Args:
        dim: token width (9C).
        num_heads: heads over the reduced width (9 in FIWHN: 16-wide heads at C = 32).
        chunks: contiguous token chunks that attend only within themselves (:func:`chunked_attention`).
    """

    def __init__(self, dim: int, num_heads: int = 9, chunks: int = 4) -> None:
        super().__init__()
        if (dim // 2) % num_heads:
            raise ValueError(f"attention width {dim // 2} is not divisible by {num_heads} heads")
        self.num_heads, self.chunks = num_heads, chunks
        self.scale = (dim // num_heads) ** -0.5  # official: from the unreduced width
        self.reduce = nn.Linear(dim, dim // 2, bias=False)
        self.qkv = nn.Linear(dim // 2, 3 * (dim // 2), bias=False)
        self.proj = nn.Linear(dim // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, dim] -> [B, N, dim]."""
        x = self.reduce(x)
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = chunked_attention(q, k, v, chunks=self.chunks, scale=self.scale)  # [B, heads, N, d]
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class EfficientTransformer(nn.Module):
    """Pre-norm transformer block over 3x3 neighbourhood tokens: [B, C, H, W] -> [B, C, H, W].

    Unfold (width 9C) -> ``x + attn(LN(x))`` -> ``x + MLP(LN(x))`` (9C -> 9C/4 -> 9C, ReLU) -> fold (sums).
    """

    def __init__(self, channels: int, num_heads: int = 9, chunks: int = 4) -> None:
        super().__init__()
        dim = 9 * channels
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientAttention(dim, num_heads, chunks)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(OrderedDict(fc1=nn.Linear(dim, dim // 4), act=nn.ReLU(), fc2=nn.Linear(dim // 4, dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = unfold_neighbourhoods(x)
        tokens = tokens + self.attn(self.norm1(tokens))
        tokens = tokens + self.mlp(self.norm2(tokens))
        return fold_neighbourhoods(tokens, x.shape[-2:])


class FIWHN(nn.Module):
    """Feature Interaction Weighted Hybrid Network: RGB [B, 3, h, w] in [0, rgb_range] -> [B, 3, s*h, s*w].

    Args:
        scale: upscaling factor s (2, 3 or 4 in the paper).
        channels: feature width C (32 in the paper; divisible by 8).
        rgb_range: the pixel range of input and output (255 as the official training).
        rgb_mean: per-channel mean (fractions of ``rgb_range``) removed at the input and added at the output.
        num_heads, chunks: the transformer branch's attention heads and token chunks.
        skip_init: ``"default"`` (PyTorch's initialisation, as the official code) or ``"bicubic"`` (ours: the
            network starts as bicubic-like upsampling, :meth:`_start_as_bicubic`; for short trainings).
    """

    def __init__(self, scale: int = 4, channels: int = 32, rgb_range: float = 255.0,
                 rgb_mean: tuple[float, float, float] = DIV2K_MEAN, num_heads: int = 9, chunks: int = 4,
                 skip_init: Literal["default", "bicubic"] = "default") -> None:  # fmt: skip
        super().__init__()
        if scale < 1 or channels % 8 or skip_init not in ("default", "bicubic"):
            raise ValueError(f"FIWHN needs scale >= 1, channels divisible by 8 and skip_init 'default' or 'bicubic', "
                             f"got scale={scale}, channels={channels}, skip_init={skip_init!r}")  # fmt: skip
        self.scale, self.rgb_range = scale, rgb_range
        self.sub_mean = MeanShift(rgb_range, rgb_mean, sign=-1)
        self.add_mean = MeanShift(rgb_range, rgb_mean, sign=1)
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.group = FeatureShuffleGroup(channels)
        self.to_transformer = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.transformer = nn.Sequential(*(EfficientTransformer(channels, num_heads, chunks) for _ in range(2)))
        self.from_transformer = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.merge = nn.Conv2d(2 * channels, channels, 1, bias=False)
        self.tail_conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.tail_up = nn.Sequential(nn.Conv2d(channels, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))
        self.skip_conv = nn.Conv2d(3, channels, 3, padding=1)
        self.skip_up = nn.Sequential(nn.Conv2d(channels, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))
        if skip_init == "bicubic":
            self._start_as_bicubic()

    def _start_as_bicubic(self) -> None:
        """Ours: start as (3-tap) bicubic upsampling, so a short training learns a correction of it.

        The global skip becomes the identity (``skip_conv``) followed by, per output sub-pixel, the separable
        cubic-convolution weights (a = -0.5, PIL's) of its 3 nearest LR pixels, renormalised to sum to 1
        (``skip_up``); the body's last conv starts at zero. Only the initial values change, never the layers.
        """
        s = self.scale
        offsets = (torch.arange(s, dtype=torch.float64) + 0.5) / s - 0.5  # sub-pixel positions in LR pixels
        taps = torch.stack([_cubic(offsets - t) for t in (-1.0, 0.0, 1.0)], dim=1)  # [s, 3]: weight of LR p+t
        taps = taps / taps.sum(dim=1, keepdim=True)
        with torch.no_grad():
            for conv in (self.skip_conv, self.skip_up[0], self.tail_up[0]):
                conv.weight.zero_()
                conv.bias.zero_()
            for c in range(3):
                self.skip_conv.weight[c, c, 1, 1] = 1.0
                for dy in range(s):
                    for dx in range(s):
                        kernel = torch.outer(taps[dy], taps[dx]).to(self.skip_up[0].weight.dtype)
                        self.skip_up[0].weight[c * s * s + dy * s + dx, c] = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = self.sub_mean(x)
        features = self.head(shifted)
        first, o2 = self.group(features)  # the first pass of the shared group
        context = self.transformer(self.to_transformer(o2) + features)
        second, _ = self.group(first, inject=self.from_transformer(context))  # same weights again
        body = self.tail_up(self.tail_conv(self.merge(torch.cat([second, context], dim=1))))
        return self.add_mean(body + self.skip_up(self.skip_conv(shifted)))


# --------------------------------------------------------------------------------------------------
# foreign weights: the official checkpoints' names

#: Our name segment -> the official one (``faceops`` names say what a layer does; the official ones
#: number them). ``blocks.<i>`` and ``transformer.<i>`` map to ``MY<i+1>`` / ``attention<i+1>``.
_OFFICIAL_SEGMENTS = {
    "sub_mean": "Sub_mean", "add_mean": "Add_mean", "to_transformer": "conv_down", "from_transformer": "conv_up",
    "merge": "conv", "tail_conv": "conv1", "tail_up": "UP1", "skip_conv": "conv2", "skip_up": "UP2",
    "merge1": "conv_concat1", "merge2": "conv_concat2", "output_weight": "scale_x.scale",
    "input_weight": "scale_res.scale", "unit_a1": "srb1", "unit_a2": "rb1", "unit_b1": "srb2", "unit_b2": "rb2",
    "out_a": "srb3", "out_b": "srb4", "gate_a1": "A1_coffconv", "gate_b1": "B1_coffconv", "gate_a2": "A2_coffconv",
    "gate_b2": "B2_coffconv", "distil_b": "conv_distilled1", "distil_a": "conv_distilled2",
    "weight_a": "scale_x1.scale", "weight_b": "scale_x2.scale", "fuse": "fuse1", "fuse_gate": "fuse2",
    "expand": "body.0", "squeeze": "body.2", "conv": "body.3", "attention": "SAlayer", "skip": "conv",
    "res_weight": "res_scale.scale", "skip_weight": "x_scale.scale", "channel_weight": "cweight",
    "channel_bias": "cbias", "spatial_weight": "sweight", "spatial_bias": "sbias", "norm": "gn",
    "mean_reduce": "upper_branch.1", "mean_expand": "upper_branch.3", "std_reduce": "lower_branch.0",
    "std_expand": "lower_branch.2", "attn": "atten",
}  # fmt: skip
_NUMBERED = {"group.blocks": "MY", "transformer": "attention"}


def official_key(name: str) -> str:
    """The official checkpoint's name of our state-dict entry ``name`` (``group.blocks.0.fuse.skip.weight``
    -> ``MY1.fuse1.conv.weight``; the official model has no ``group`` level)."""
    match = re.match(r"(group\.blocks|transformer)\.(\d+)\.(.*)$", name)
    if match:
        return f"{_NUMBERED[match[1]]}{int(match[2]) + 1}." + _map_segments(match[3])
    return _map_segments(name.removeprefix("group."))


def _map_segments(name: str) -> str:
    parts = name.split(".")
    return ".".join(_OFFICIAL_SEGMENTS.get(p, p) if i < len(parts) - 1 or p not in ("weight", "bias") else p
                    for i, p in enumerate(parts))  # fmt: skip


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: FIWHN) -> dict[str, torch.Tensor]:
    """An official FIWHN state dict renamed to ``model``'s names, strictly: every tensor must fit.

    Raises:
        ValueError: naming the first of our tensors whose official name is missing or whose shape differs,
            or the first official tensor that nothing of ours reads.
    """
    own = model.state_dict()
    expected = {official_key(name): name for name in own}
    for theirs, ours in expected.items():
        if theirs not in state_dict:
            raise ValueError(f"the checkpoint has no {theirs!r} (our {ours!r}, shape {tuple(own[ours].shape)}); "
                             "it is not an official FIWHN checkpoint of this width and scale")  # fmt: skip
        if tuple(state_dict[theirs].shape) != tuple(own[ours].shape):
            raise ValueError(f"{theirs!r} has shape {tuple(state_dict[theirs].shape)}, our {ours!r} needs "
                             f"{tuple(own[ours].shape)}; wrong width or scale")  # fmt: skip
    unread = [key for key in state_dict if key not in expected]
    if unread:
        raise ValueError(f"the checkpoint holds {len(unread)} tensors FIWHN does not have, first {unread[0]!r}")
    return {ours: state_dict[theirs] for theirs, ours in expected.items()}


# --------------------------------------------------------------------------------------------------
# factory and registered variants


def _create_fiwhn(variant: str, pretrained: bool = False, **kwargs: Any) -> FIWHN:
    """Build a FIWHN variant; the official weights are imported with ``faceops import-weights fiwhn``."""
    if pretrained:
        raise ValueError(f"no weights are bundled for {variant!r}; import the official checkpoint with "
                         "`faceops import-weights fiwhn CHECKPOINT`")  # fmt: skip
    return FIWHN(**kwargs)


@register_model
def fiwhn_x2(pretrained: bool = False, **kwargs: Any) -> FIWHN:
    """FIWHN x2, C = 32 (705,098 parameters)."""
    return _create_fiwhn("fiwhn_x2", pretrained, **dict(dict(scale=2, channels=32), **kwargs))


@register_model
def fiwhn_x3(pretrained: bool = False, **kwargs: Any) -> FIWHN:
    """FIWHN x3, C = 32 (713,768 parameters)."""
    return _create_fiwhn("fiwhn_x3", pretrained, **dict(dict(scale=3, channels=32), **kwargs))


@register_model
def fiwhn_x4(pretrained: bool = False, **kwargs: Any) -> FIWHN:
    """FIWHN x4, C = 32 (725,906 parameters)."""
    return _create_fiwhn("fiwhn_x4", pretrained, **dict(dict(scale=4, channels=32), **kwargs))
