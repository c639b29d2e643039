"""Random scale/rotation applied identically to images, heatmaps and points.

Why one ``theta`` for everything: SSPCM warps the student's input *and* the teachers' heatmaps with
the same affine so targets stay on the warped keypoints. ``theta`` lives in the normalised
coordinates of ``torch.nn.functional.affine_grid`` (``align_corners=False``: -1 and 1 are the outer
pixel edges), where an image and its stride-``s`` heatmap cover the same extent, so the same
``theta`` is correct at both resolutions. Rotation is built in pixel space (``D R D^-1``) so it
stays a rotation on non-square inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_affine", "affine_theta", "warp", "warp_points"]


def affine_theta(scale: torch.Tensor, angle_deg: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``affine_grid`` matrices that scale by ``scale`` and rotate by ``angle_deg`` about the centre.

    Args:
        scale: [N] zoom factors (> 1 enlarges the content).
        angle_deg: [N] rotation of the content in degrees (positive turns x towards y, i.e. clockwise
            as seen with y down).
        size: (height, width) of the images; only the aspect ratio matters.

    Returns:
        [N, 2, 3] float32 mapping output normalised coords to input normalised coords.
    """
    height, width = size
    a = torch.deg2rad(angle_deg.to(torch.float32))
    c, s = torch.cos(a), torch.sin(a)
    k = height / width  # D = diag(2/W, 2/H); D R(-a) D^-1 has these off-diagonal aspect factors
    inv = 1.0 / scale.to(torch.float32)
    theta = torch.zeros(scale.shape[0], 2, 3)
    theta[:, 0, 0] = c * inv
    theta[:, 0, 1] = s * inv * k
    theta[:, 1, 0] = -s * inv / k
    theta[:, 1, 1] = c * inv
    return theta


def random_affine(
    n: int,
    size: tuple[int, int],
    *,
    generator: torch.Generator,
    scale_sigma: float = 0.25,
    scale_range: tuple[float, float] = (0.75, 1.25),
    rotation_sigma: float = 30.0,
    rotation_max: float = 60.0,
    prob: float = 0.8,
) -> torch.Tensor:
    """Draw SSPCM's hard augmentation: scale ~ N(1, sigma) clipped, rotation ~ N(0, sigma) clipped.

    Args:
        n: batch size.
        size: (height, width) of the images.
        generator: the random source (CPU generator).
        scale_sigma, scale_range: scale distribution and its clip range.
        rotation_sigma, rotation_max: rotation distribution (degrees) and its symmetric clip.
        prob: chance that an image is transformed at all; the others get the identity.

    Returns:
        [N, 2, 3] ``theta`` for :func:`warp`.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob={prob} must be in [0, 1]")
    scale = (1 + scale_sigma * torch.randn(n, generator=generator)).clamp(*scale_range)
    angle = (rotation_sigma * torch.randn(n, generator=generator)).clamp(-rotation_max, rotation_max)
    keep = torch.rand(n, generator=generator) < prob
    scale = torch.where(keep, scale, torch.ones_like(scale))
    angle = torch.where(keep, angle, torch.zeros_like(angle))
    return affine_theta(scale, angle, size)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample images or heatmaps [N, C, H, W] through ``theta`` [N, 2, 3]; outside is zero."""
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def warp_points(points: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Where points land after :func:`warp` with the same ``theta``.

    Args:
        points: [N, J, 2] (x, y) pixels of an image of ``size`` (height, width).
        theta: [N, 2, 3] as passed to :func:`warp`.
        size: (height, width) of that image (or heatmap).

    Returns:
        [N, J, 2] (x, y) pixels in the warped image.
    """
    height, width = size
    scale = torch.tensor([width, height], dtype=points.dtype, device=points.device)
    u = (2 * points + 1) / scale - 1
    a, t = theta[:, :, :2].to(points), theta[:, :, 2].to(points)
    u_out = torch.linalg.solve(a, (u - t[:, None, :]).transpose(1, 2)).transpose(1, 2)  # theta maps out -> in
    return ((u_out + 1) * scale - 1) / 2
