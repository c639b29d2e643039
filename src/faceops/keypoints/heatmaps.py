"""Gaussian heatmap targets and their argmax decoding (SimpleBaseline convention).

Why unnormalised Gaussians (peak 1): the teachers' peak value is read as a confidence and compared
with a fixed threshold (``score_threshold`` = 0.1 in SSPCM), which only means something if a
perfect heatmap peaks at 1 regardless of sigma.

Coordinates are (x, y) in heatmap pixels, x -> column, y -> row, pixel centres at integers. An
image of stride ``s`` maps to heatmap coordinates by ``(p + 0.5) / s - 0.5`` (pixel centres, the
``align_corners=False`` convention of ``grid_sample``), see :func:`image_to_heatmap`.
"""

from __future__ import annotations

import torch

__all__ = ["encode_heatmaps", "decode_heatmaps", "image_to_heatmap", "heatmap_to_image"]


def encode_heatmaps(
    points: torch.Tensor, size: tuple[int, int], *, sigma: float = 2.0, visible: torch.Tensor | None = None
) -> torch.Tensor:
    """Render one Gaussian per joint.

    Args:
        points: [N, J, 2] (x, y) in heatmap pixels; may be fractional or outside the map.
        size: (height, width) of the heatmaps.
        sigma: Gaussian standard deviation in heatmap pixels (> 0).
        visible: optional [N, J] bool/0-1; invisible joints get an all-zero map.

    Returns:
        [N, J, H, W] float32 with peak 1 at each visible point (when it falls on a pixel centre).
    """
    if sigma <= 0:
        raise ValueError(f"sigma={sigma} must be > 0 (heatmap pixels); SimpleBaseline uses 2 at stride 4")
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be [N, J, 2] (x, y); got shape {tuple(points.shape)}")
    height, width = size
    pts = points.to(torch.float32)
    xs = torch.arange(width, dtype=torch.float32, device=pts.device)
    ys = torch.arange(height, dtype=torch.float32, device=pts.device)
    gx = torch.exp(-((xs - pts[..., 0:1]) ** 2) / (2 * sigma**2))  # [N, J, W]
    gy = torch.exp(-((ys - pts[..., 1:2]) ** 2) / (2 * sigma**2))  # [N, J, H]
    maps = gy[..., :, None] * gx[..., None, :]
    if visible is not None:
        maps = maps * visible.to(maps.dtype)[..., None, None]
    return maps


def decode_heatmaps(heatmaps: torch.Tensor, *, refine: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax location and peak value per joint.

    Args:
        heatmaps: [N, J, H, W].
        refine: shift each argmax a quarter pixel towards the higher neighbour per axis (the usual
            SimpleBaseline sub-pixel step); symmetric peaks stay exactly on their pixel.

    Returns:
        coords [N, J, 2] float32 (x, y) in heatmap pixels, and maxvals [N, J] (the peak heights).
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be [N, J, H, W]; got shape {tuple(heatmaps.shape)}")
    n, j, height, width = heatmaps.shape
    flat = heatmaps.detach().reshape(n, j, height * width)
    maxvals, index = flat.max(dim=-1)
    coords = torch.stack([index % width, torch.div(index, width, rounding_mode="floor")], dim=-1).to(torch.float32)
    if refine:
        x, y = index % width, torch.div(index, width, rounding_mode="floor")
        def at(xx: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
            return torch.gather(flat, -1, (yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1))[..., None])[..., 0]

        dx = torch.where((x > 0) & (x < width - 1), at(x + 1, y) - at(x - 1, y), torch.zeros_like(maxvals))
        dy = torch.where((y > 0) & (y < height - 1), at(x, y + 1) - at(x, y - 1), torch.zeros_like(maxvals))
        coords = coords + 0.25 * torch.stack([torch.sign(dx), torch.sign(dy)], dim=-1)
    return coords, maxvals


def image_to_heatmap(points: torch.Tensor, stride: float) -> torch.Tensor:
    """Image pixel coordinates -> heatmap pixel coordinates (pixel-centre convention), any shape [..., 2]."""
    return (points + 0.5) / stride - 0.5


def heatmap_to_image(points: torch.Tensor, stride: float) -> torch.Tensor:
    """Heatmap pixel coordinates -> image pixel coordinates (inverse of :func:`image_to_heatmap`)."""
    return (points + 0.5) * stride - 0.5
