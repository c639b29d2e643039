"""Corner heatmap targets: HEAT's Gaussian corner maps, split into direction channels as CornerFormer proposes.

HEAT (Chen, Qian and Furukawa, CVPR 2022, arXiv 2111.15143) trains one sigmoid heatmap whose target is a
Gaussian (sigma 2 px, peak 1) at every corner. CornerFormer (Tian, Li, Huang, Ling, Yang and Hu, "Boosting
Corner Representation for Fine-Grained Structured Reconstruction", arXiv 2304.07072) proposes corner
candidates in four heatmap channels "according to corner direction", so two adjacent corners that face
different ways no longer suppress each other. The paper's rule for the direction is not available to us;
**the rule here is our reconstruction**: a corner's direction is the sum of the unit vectors along its
edges (for a degree-2 corner, the bisector of its two edges, pointing into the corner's angle), and the
channel is the sector of that angle, ``channels`` sectors of equal width starting ``offset_deg`` from the
+x axis (image x right, y down). With the default offset 0 the four sectors are the quadrants, so the
corners of an axis-aligned rectangle (bisectors at 45 + k * 90 degrees) sit in the middle of their
sectors, one per channel. A corner whose edge vectors cancel (a straight-through corner) points
perpendicular to its first edge (turned +90 degrees); an isolated corner goes to channel 0. One channel
gives HEAT's single heatmap. Every corner lands in exactly one channel.

Papers: CornerFormer: Hongbo Tian, Yulong Li, Linzhi Huang, Xu Ling, Yue Yang and Jiani Hu, "CornerFormer: Boosting
Corner Representation for Fine-Grained Structured Reconstruction", arXiv preprint 2304.07072, 2023; HEAT: Jiacheng
Chen, Yiming Qian and Yasutaka Furukawa, "HEAT: Holistic Edge Attention Transformer for Structured Reconstruction",
CVPR 2022, arXiv 2111.15143.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from faceops.structure.graph import PlanarGraph, graph_from_labels

__all__ = ["corner_channels", "corner_heatmaps", "encode_structures"]


def corner_channels(graph: PlanarGraph, channels: int, *, offset_deg: float = 0.0) -> np.ndarray:
    """``[N]`` int64: the heatmap channel of each corner (module docstring: the direction rule).

    Raises:
        ValueError: ``channels`` < 1.
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    out = np.zeros(len(graph.corners), np.int64)
    xy = graph.corners
    for c, neighbours in enumerate(graph.neighbours()):
        if not neighbours:
            continue
        units = xy[neighbours] - xy[c]
        units /= np.linalg.norm(units, axis=1, keepdims=True)
        direction = units.sum(0)
        if np.linalg.norm(direction) < 1e-6:
            direction = np.array([-units[0, 1], units[0, 0]])
        angle = (math.degrees(math.atan2(direction[1], direction[0])) - offset_deg) % 360.0
        out[c] = min(channels - 1, int(round(angle, 6) // (360.0 / channels)))
    return out


def corner_heatmaps(
    graph: PlanarGraph, channel_of: np.ndarray, channels: int, height: int, width: int, *, sigma: float = 2.0
) -> np.ndarray:
    """``[C, H, W]`` float32 targets: a Gaussian of ``sigma`` px with peak 1 at each (rounded) corner, in its
    channel; overlapping Gaussians of one channel combine by maximum (so every corner's peak stays 1)."""
    maps = np.zeros((channels, height, width), np.float32)
    radius = int(math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2)).astype(np.float32)
    for (x, y), channel in zip(np.round(graph.corners).astype(np.int64), channel_of):
        y0, y1, x0, x1 = max(0, y - radius), min(height, y + radius + 1), max(0, x - radius), min(width, x + radius + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        patch = kernel[y0 - y + radius : y1 - y + radius, x0 - x + radius : x1 - x + radius]
        np.maximum(maps[channel, y0:y1, x0:x1], patch, out=maps[channel, y0:y1, x0:x1])
    return maps


def encode_structures(
    metas: Sequence[Mapping[str, Any]], *, channels: int, sigma: float, offset_deg: float
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A batch's labels as training targets (the ``encode`` of ``faceops.train.mixing.MixedBatches``).

    Each label record holds ``width``, ``height`` (of the image in the shard), ``corners`` and ``edges``.

    Returns:
        ``targets``: ``heatmap`` [B, C, H, W] float, ``corners`` [B, N, 2] float (x, y; N = most corners in
        the batch, padded with 0), ``corner_mask`` [B, N] bool, ``adjacency`` [B, N, N] bool;
        ``masks``: ``heatmap`` [B] bool, all True (every structure sample is labelled).

    Raises:
        ValueError: a sample's labels are not a graph, or the batch's images differ in size (naming the id).
    """
    sizes = {(meta.get("height"), meta.get("width")) for meta in metas}
    if len(sizes) != 1 or not all(isinstance(v, int) and v > 0 for v in next(iter(sizes))):
        raise ValueError(
            f"a batch needs one image size in its labels' height/width, got {sorted(map(str, sizes))} "
            f"(ids {[meta.get('id') for meta in metas][:4]}...); write the shards at one image_size"
        )
    height, width = next(iter(sizes))
    graphs = []
    for meta in metas:
        try:
            graphs.append(graph_from_labels(meta))
        except (KeyError, ValueError) as err:
            raise ValueError(f"sample {meta.get('id')!r}: labels are not a planar graph ({err})") from None
    n = max([len(g.corners) for g in graphs] + [1])
    heat = np.stack([corner_heatmaps(g, corner_channels(g, channels, offset_deg=offset_deg), channels, height, width,
                                     sigma=sigma) for g in graphs])  # fmt: skip
    corners = np.zeros((len(graphs), n, 2), np.float32)
    mask = np.zeros((len(graphs), n), bool)
    adjacency = np.zeros((len(graphs), n, n), bool)
    for b, g in enumerate(graphs):
        corners[b, : len(g.corners)] = g.corners
        mask[b, : len(g.corners)] = True
        adjacency[b, g.edges[:, 0], g.edges[:, 1]] = adjacency[b, g.edges[:, 1], g.edges[:, 0]] = True
    targets = {"heatmap": torch.from_numpy(heat), "corners": torch.from_numpy(corners),
               "corner_mask": torch.from_numpy(mask), "adjacency": torch.from_numpy(adjacency)}  # fmt: skip
    return targets, {"heatmap": torch.ones(len(graphs), dtype=torch.bool)}
