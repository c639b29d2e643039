"""Super-resolution image quality as SR papers report it: PSNR and SSIM on the Y channel, borders shaved.

The standard protocol (EDSR's ``calc_psnr`` in benchmark mode, which FIWHN's code keeps, arXiv:2212.14181):
compare the luma of the two RGB images, ``Y = 16 + (65.738 R + 129.057 G + 25.064 B) / 256`` (ITU-R BT.601 as
MATLAB's ``rgb2ycbcr``, pixels in [0, 255]), after shaving ``scale`` pixels off every border (the upsampler
cannot know what lies beyond the image). SSIM is Wang et al.'s (IEEE TIP 2004): 11x11 Gaussian window,
sigma 1.5, K1 = 0.01, K2 = 0.03, peak 255, over the valid (unpadded) window positions, averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["MAX_PSNR", "psnr_y", "rgb_to_y", "ssim_y"]

#: PSNR of identical images is infinite; it is reported as this many dB (a mean over images stays finite).
MAX_PSNR = 100.0
_Y_WEIGHTS = (65.738 / 256, 129.057 / 256, 25.064 / 256)


def rgb_to_y(images: torch.Tensor) -> torch.Tensor:
    """RGB [B, 3, H, W] in [0, 255] (any dtype) -> luma Y [B, 1, H, W] float64 in [16, 235]."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"rgb_to_y expects RGB images [B, 3, H, W], got shape {tuple(images.shape)}")
    weights = torch.tensor(_Y_WEIGHTS, dtype=torch.float64, device=images.device).view(1, 3, 1, 1)
    return 16.0 + (images.to(torch.float64) * weights).sum(dim=1, keepdim=True)


def _shaved_luma(sr: torch.Tensor, hr: torch.Tensor, shave: int) -> tuple[torch.Tensor, torch.Tensor]:
    if sr.shape != hr.shape:
        raise ValueError(f"super-resolved {tuple(sr.shape)} and reference {tuple(hr.shape)} images differ in shape")
    if shave < 0 or 2 * shave >= min(hr.shape[-2:]):
        raise ValueError(f"shaving {shave} px off every border leaves nothing of a {tuple(hr.shape[-2:])} image")
    a, b = rgb_to_y(sr), rgb_to_y(hr)
    if shave:
        a, b = a[..., shave:-shave, shave:-shave], b[..., shave:-shave, shave:-shave]
    return a, b


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, *, shave: int) -> torch.Tensor:
    """PSNR (dB) of each image's Y channel, ``shave`` border pixels excluded: [B] float64 (identical: ``MAX_PSNR``)."""
    a, b = _shaved_luma(sr, hr, shave)
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))
    return (10.0 * torch.log10(255.0**2 / mse)).clamp(max=MAX_PSNR)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, *, shave: int) -> torch.Tensor:
    """SSIM of each image's Y channel, ``shave`` border pixels excluded: [B] float64 in [-1, 1] (1 = identical).

    Raises:
        ValueError: shapes differ, or the shaved image is smaller than the 11x11 window.
    """
    a, b = _shaved_luma(sr, hr, shave)
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after shaving, got {tuple(a.shape[-2:])}")
    window = _gaussian_window().to(a.device)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean(dim=(1, 2, 3))
