"""SwinFace: one Swin Transformer for face recognition, expression, age and 40 attributes.

Paper: Qin et al., "SwinFace: A Multi-task Transformer for Face Recognition, Expression Recognition,
Age Estimation and Attribute Estimation", arXiv preprint 2308.11509, 2023 (https://arxiv.org/abs/2308.11509).
Only the paper's abstract was available to us: the architecture facts below (patch-2 Swin-T, the four
7x7 taps, recognition subnet, MLCA subnets and the 11-subnet task grouping) come from the authors' released
code (github.com/lxq1000/SwinFace, read at commit 2770479, MIT license), not from the paper's text. This
file is written independently on top of timm's Swin blocks and borrows no code from that repository.
Ours, not the authors': the assembly of the original Swin stage layout from timm's blocks (below), the
CPU-sized variants (``swinface_cpu*``: embed 24, one block per stage, embedding 64, fused width 64) and
:func:`split_widths`, which splits any fused width over the levels in proportion to their widths (for
512 it gives the released 47/93/186/186).

Layout (full size, 112x112 input): patch-2 embedding, four stages of Swin blocks where stages 1-3 *end*
with a patch merging (the original Swin layout; timm merges at the *start* of a stage, so the stages
are assembled here from timm's blocks). Token grids 56 -> 28 -> 14 -> 7 -> 7. Four 7x7 taps
(FM1..FM3 after each merging, average-pooled to 7x7; FM4 the last stage before the final norm) are
concatenated into the "all" feature map [B, 2112, 7, 7]. The recognition subnet reads the final
tokens; each of the 11 analysis subnets (MLCA: multi-level feature fusion + channel attention) reads
the "all" map. The task layout lives in ``faceops.models.tasks``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.swin_transformer import PatchMerging, SwinTransformerBlock

from faceops.models._registry import register_former_name, register_model
from faceops.models.tasks import RECOGNITION, SWINFACE_SUBNETS, HeadSpec, SubnetSpec

__all__ = [
    "split_widths",
    "SwinFaceStage",
    "SwinFaceTrunk",
    "RecognitionSubnet",
    "MultiLevelFusion",
    "ChannelGate",
    "MLCASubnet",
    "SwinFace",
]

_BN_EPS = 2e-5  # SwinFace's BatchNorm1d eps everywhere in the heads


# --------------------------------------------------------------------------------------------------
# helpers


def split_widths(total: int, level_widths: Sequence[int]) -> tuple[int, ...]:
    """Share ``total`` output channels between levels in proportion to their input widths.

    Each level gets ``round(total * c_i / sum(c))``; the last level takes the remainder so the widths
    sum to ``total`` exactly. For SwinFace (512 over 192/384/768/768) this gives 47/93/186/186.

    Raises:
        ValueError: a level would get fewer than one channel.
    """
    whole = sum(level_widths)
    widths = [round(total * c / whole) for c in level_widths[:-1]]
    widths.append(total - sum(widths))
    if min(widths) < 1:
        raise ValueError(
            f"fusion width {total} is too small for levels {tuple(level_widths)} (got widths {widths}); "
            f"use at least {len(level_widths)} channels per level's share"
        )
    return tuple(widths)


def _nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    """[B, H, W, C] tokens -> [B, C, H, W] map."""
    return x.permute(0, 3, 1, 2).contiguous()


def _init_linear(module: nn.Module) -> None:
    """SwinFace's init: truncated-normal(0.02) Linear weights, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------------
# backbone


class SwinFaceStage(nn.Module):
    """Swin blocks at one resolution, optionally *followed* by a 2x2 patch merging.

    Works on channels-last tokens [B, H, W, C] like timm's blocks. Blocks alternate regular and
    shifted windows; timm disables the shift itself when the grid is no larger than the window.
    """

    def __init__(
        self,
        dim: int,
        grid: int,
        depth: int,
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop_path: Sequence[float] = (),
        merge: bool = True,
    ):
        """
        Args:
            dim: token width C.
            grid: token grid side H = W of this stage.
            depth: number of Swin blocks.
            num_heads: attention heads per block.
            window_size: attention window side.
            mlp_ratio: block MLP hidden width / C.
            drop_path: stochastic-depth rate per block (length ``depth``; empty = no drop path).
            merge: end with a PatchMerging (C -> 2C, grid -> grid / 2).
        """
        super().__init__()
        rates = list(drop_path) or [0.0] * depth
        if len(rates) != depth:
            raise ValueError(f"drop_path has {len(rates)} rates for {depth} blocks; give one per block")
        self.blocks = nn.Sequential(
            *[
                SwinTransformerBlock(
                    dim=dim,
                    input_resolution=(grid, grid),
                    num_heads=num_heads,
                    window_size=window_size,
                    shift_size=0 if i % 2 == 0 else window_size // 2,
                    mlp_ratio=mlp_ratio,
                    drop_path=rates[i],
                )
                for i in range(depth)
            ]
        )
        self.merge = PatchMerging(dim=dim, out_dim=2 * dim) if merge else nn.Identity()
        self.out_dim = 2 * dim if merge else dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, H, W, C] -> [B, H/2, W/2, 2C] (or [B, H, W, C] without merging)."""
        return self.merge(self.blocks(x))


class SwinFaceTrunk(nn.Module):
    """Patch embedding + Swin stages, returning SwinFace's four multi-level taps as 7x7 maps."""

    def __init__(
        self,
        img_size: int = 112,
        patch_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
    ):
        """
        Args:
            img_size: input side (square faces).
            patch_size: patch side of the embedding (SwinFace: 2, so 112 px -> 56x56 tokens).
            in_chans: input channels.
            embed_dim: token width of stage 1; doubled by every merging.
            depths: blocks per stage; every stage but the last ends with a merging.
            num_heads: attention heads per stage.
            window_size: attention window side.
            mlp_ratio: block MLP hidden width / token width.
            drop_path_rate: stochastic depth of the last block (linear ramp from 0 over all blocks).
        """
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} must have one entry per stage")
        n = len(depths)
        grid = img_size // patch_size
        if img_size % patch_size or grid % 2 ** (n - 1):
            raise ValueError(
                f"img_size {img_size} must be divisible by patch_size * 2**(stages-1) = {patch_size * 2 ** (n - 1)} "
                "so every merging halves an even grid"
            )
        self.patch_embed = PatchEmbed(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            norm_layer=nn.LayerNorm,
            output_fmt="NHWC",
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        stages, dim, level_channels = [], embed_dim, []
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            stage = SwinFaceStage(
                dim=dim,
                grid=grid // 2**i,
                depth=depth,
                num_heads=heads,
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                drop_path=rates[sum(depths[:i]) : sum(depths[: i + 1])],
                merge=i < n - 1,
            )
            stages.append(stage)
            dim = stage.out_dim
            level_channels.append(dim)
        self.stages = nn.ModuleList(stages)
        self.level_channels: tuple[int, ...] = tuple(level_channels)
        self.final_grid = grid // 2 ** (n - 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images [B, 3, H, W] -> one [B, C_i, G, G] map per stage (G = final grid, 7 at 112 px).

        Stage i's tap is its output after merging, average-pooled down to the final grid; the last
        tap is the last stage's output before any normalisation (SwinFace's "global features").
        """
        x = self.patch_embed(x)  # [B, 56, 56, C]
        taps = []
        for stage in self.stages:
            x = stage(x)
            fmap = _nhwc_to_nchw(x)
            factor = fmap.shape[-1] // self.final_grid
            taps.append(F.avg_pool2d(fmap, factor) if factor > 1 else fmap)
        return taps


# --------------------------------------------------------------------------------------------------
# subnets


class RecognitionSubnet(nn.Module):
    """Final tokens -> LayerNorm -> mean-pool -> Linear -> BN -> Linear -> BN -> identity embedding."""

    def __init__(self, in_dim: int = 768, embedding_size: int = 512):
        """
        Args:
            in_dim: channels of the last stage.
            embedding_size: embedding width D.
        """
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.neck = nn.Sequential(
            nn.Linear(in_dim, in_dim, bias=False),
            nn.BatchNorm1d(in_dim, eps=_BN_EPS),
            nn.Linear(in_dim, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size, eps=_BN_EPS),
        )

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        """Last-stage map [B, C, G, G] -> embedding [B, D] (not L2-normalised)."""
        tokens = fmap.flatten(2).transpose(1, 2)  # [B, G*G, C]
        return self.neck(self.norm(tokens).mean(dim=1))


class MultiLevelFusion(nn.Module):
    """MLFF: one 3x3 conv per level over that level's channel slice, outputs concatenated.

    Each conv sees only its own level, so the fused map's slice ``i`` depends on level ``i`` alone.
    """

    def __init__(self, in_widths: Sequence[int], out_widths: Sequence[int], kernel_size: int = 3):
        """
        Args:
            in_widths: channels of each level in the concatenated input.
            out_widths: channels each level contributes to the fused map.
            kernel_size: conv kernel side (padding keeps the grid).
        """
        super().__init__()
        if len(in_widths) != len(out_widths):
            raise ValueError(f"in_widths {tuple(in_widths)} and out_widths {tuple(out_widths)} differ in length")
        self.in_widths = tuple(in_widths)
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False)
            for c_in, c_out in zip(in_widths, out_widths)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, sum(in_widths), G, G] -> [B, sum(out_widths), G, G]."""
        levels = torch.split(x, self.in_widths, dim=1)
        return torch.cat([conv(level) for conv, level in zip(self.convs, levels)], dim=1)


class ChannelGate(nn.Module):
    """CBAM channel attention: rescale each channel by sigmoid(MLP(avg) + MLP(max)) in (0, 1).

    The gate is one scalar per (sample, channel), so it never grows a value and is constant over H, W.
    """

    def __init__(self, channels: int, reduction: int = 16):
        """
        Args:
            channels: C.
            reduction: hidden width of the shared MLP is ``max(1, C // reduction)``.
        """
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        logits = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))  # [B, C]
        return x * torch.sigmoid(logits)[:, :, None, None]


class MLCASubnet(nn.Module):
    """One analysis subnet: MLFF -> channel gate -> ReLU -> max-pool -> BN -> 2-layer MLP -> heads."""

    def __init__(
        self,
        spec: SubnetSpec,
        in_widths: Sequence[int],
        width: int = 512,
        reduction: int = 16,
        drop_rate: float = 0.5,
    ):
        """
        Args:
            spec: the subnet's heads (names and widths).
            in_widths: channels per level of the "all" feature map.
            width: fused-map width F, also the MLP width (SwinFace: 512).
            reduction: channel-gate MLP reduction.
            drop_rate: dropout after each MLP layer.
        """
        super().__init__()
        self.fusion = MultiLevelFusion(in_widths, split_widths(width, in_widths))
        self.gate = ChannelGate(width, reduction)
        self.norm = nn.BatchNorm1d(width, eps=_BN_EPS)
        self.mlp = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(), nn.Dropout(drop_rate),
            nn.Linear(width, width), nn.ReLU(), nn.Dropout(drop_rate),
        )  # fmt: skip
        self.heads = nn.ModuleDict({h.name: nn.Linear(width, h.num_outputs) for h in spec.heads})

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """"all" map [B, sum(in_widths), G, G] -> {head name: [B, k]}."""
        x = F.relu(self.gate(self.fusion(feats)))
        x = self.mlp(self.norm(F.adaptive_max_pool2d(x, 1).flatten(1)))  # [B, F]
        return {name: head(x) for name, head in self.heads.items()}


# --------------------------------------------------------------------------------------------------
# model


class SwinFace(nn.Module):
    """SwinFace multi-task model (or, with ``subnets=()``, its recognition-only form).

    ``forward`` returns a dict: ``"Recognition"`` -> embedding [B, D] plus one [B, k] tensor per
    analysis head (``faceops.models.tasks``). Margin heads and losses live outside the model
    (``faceops.losses``); ``backbone_parameters()`` names the part SwinFace fine-tunes at lr/10
    (trunk + recognition subnet, as in the official training script).
    """

    def __init__(
        self,
        img_size: int = 112,
        patch_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        embedding_size: int = 512,
        mlff_width: int = 512,
        channel_reduction: int = 16,
        subnet_drop_rate: float = 0.5,
        subnets: Sequence[SubnetSpec] = SWINFACE_SUBNETS,
    ):
        """
        Args:
            img_size: input side (square, aligned faces).
            patch_size: patch side of the embedding.
            in_chans: input channels.
            embed_dim: stage-1 token width.
            depths: Swin blocks per stage.
            num_heads: attention heads per stage.
            window_size: attention window side.
            mlp_ratio: block MLP ratio.
            drop_path_rate: maximum stochastic-depth rate.
            embedding_size: identity embedding width D.
            mlff_width: fused-map width F of each analysis subnet (split over levels by ``split_widths``).
            channel_reduction: channel-gate MLP reduction.
            subnet_drop_rate: dropout in the analysis MLPs.
            subnets: analysis subnets to build; ``()`` gives the recognition-only model.
        """
        super().__init__()
        self.trunk = SwinFaceTrunk(
            img_size, patch_size, in_chans, embed_dim, depths, num_heads, window_size, mlp_ratio, drop_path_rate
        )
        self.recognition = RecognitionSubnet(self.trunk.level_channels[-1], embedding_size)
        self.subnets = nn.ModuleDict(
            {
                s.name: MLCASubnet(s, self.trunk.level_channels, mlff_width, channel_reduction, subnet_drop_rate)
                for s in subnets
            }
        )
        self.head_specs: tuple[HeadSpec, ...] = tuple(h for s in subnets for h in s.heads)
        self.num_features = embedding_size
        self.apply(_init_linear)

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Channels of the four taps in the "all" map (full size: 192, 384, 768, 768)."""
        return self.trunk.level_channels

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the trunk and the recognition subnet (SwinFace's lr/10 "backbone")."""
        yield from self.trunk.parameters()
        yield from self.recognition.parameters()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, 112, 112] -> "all" feature map [B, sum(level_channels), 7, 7] (2112 full size)."""
        return torch.cat(self.trunk(x), dim=1)

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> dict[str, torch.Tensor] | torch.Tensor:
        """"all" map -> output dict, or only the embedding [B, D] when ``pre_logits``.

        The recognition subnet reads the last ``level_channels[-1]`` channels, which are the final
        tokens before normalisation (FM4).
        """
        embedding = self.recognition(feats[:, -self.level_channels[-1] :])
        if pre_logits:
            return embedding
        out = {RECOGNITION: embedding}
        for subnet in self.subnets.values():
            out.update(subnet(feats))
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images [B, 3, 112, 112] (normalised to [-1, 1]) -> {output name: tensor}."""
        return self.forward_head(self.forward_features(x))


# --------------------------------------------------------------------------------------------------
# factory and registered variants


def _create_swinface(variant: str, pretrained: bool = False, **kwargs) -> SwinFace:
    """Build a SwinFace variant; no released weights are bundled (they are Google-Drive only)."""
    if pretrained:
        raise ValueError(
            f"no pretrained weights are bundled for {variant!r}; build with pretrained=False and load a "
            "faceops checkpoint with model.load_state_dict(...)"
        )
    return SwinFace(**kwargs)


_SWIN_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), embedding_size=512, mlff_width=512)
_CPU = dict(embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), embedding_size=64, mlff_width=64)
_SWIN_T_REC = dict(_SWIN_T, subnets=())
_CPU_REC = dict(_CPU, subnets=())


@register_model
def swinface_swin_t(pretrained: bool = False, **kwargs) -> SwinFace:
    """The paper's SwinFace, Swin-T backbone: embedding 512, MLFF 47/93/186/186, 11 subnets, 43 outputs."""
    return _create_swinface("swinface_swin_t", pretrained, **dict(_SWIN_T, **kwargs))


@register_model
def swinface_swin_t_rec(pretrained: bool = False, **kwargs) -> SwinFace:
    """Recognition-only SwinFace on Swin-T (pre-training / single-task baseline)."""
    return _create_swinface("swinface_swin_t_rec", pretrained, **dict(_SWIN_T_REC, **kwargs))


@register_model
def swinface_cpu(pretrained: bool = False, **kwargs) -> SwinFace:
    """SwinFace sized to train on a CPU (ours, smaller than any Swin size): embed 24, one block per stage,
    embedding 64, MLFF width 64."""
    return _create_swinface("swinface_cpu", pretrained, **dict(_CPU, **kwargs))


@register_model
def swinface_cpu_rec(pretrained: bool = False, **kwargs) -> SwinFace:
    """Recognition-only CPU-sized SwinFace."""
    return _create_swinface("swinface_cpu_rec", pretrained, **dict(_CPU_REC, **kwargs))


# Names before issue 15: in Swin's naming "t" and "tiny" both mean Swin-T, so ``swinface_t`` (the paper's
# network) and ``swinface_tiny`` (the CPU-sized one) did not say which was which. Exported records written
# before the rename carry the old names in ``model_name``; ``faceops.train.build_model`` maps them.
for _former, _current in {"swinface_t": "swinface_swin_t", "swinface_t_rec": "swinface_swin_t_rec",
                          "swinface_tiny": "swinface_cpu", "swinface_tiny_rec": "swinface_cpu_rec"}.items():
    register_former_name(_former, _current)
