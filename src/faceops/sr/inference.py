"""Running a super-resolution network on uint8 images, and the LR / bicubic / SR / HR comparison grid."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from faceops.sr.degrade import resize_bicubic

__all__ = ["comparison_grid", "super_resolve"]


@torch.no_grad()
def super_resolve(model: nn.Module, images: torch.Tensor, *, batch_size: int = 32, device: str | torch.device = "cpu",
                  ) -> torch.Tensor:  # fmt: skip
    """uint8 RGB [N, 3, h, w] -> uint8 [N, 3, s*h, s*w] by ``model`` (a FIWHN-style network reading and writing
    pixels in [0, ``model.rgb_range``]), in eval mode, ``batch_size`` images at a time; rounded as SR papers
    quantise before scoring.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"super_resolve expects uint8 images [N, 3, h, w], got {images.dtype} {tuple(images.shape)}")
    model.eval()
    to_range = float(model.rgb_range) / 255.0
    parts = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start : start + batch_size].to(device).float() * to_range
        parts.append((model(chunk) / to_range).round_().clamp_(0, 255).to(torch.uint8).cpu())
    return torch.cat(parts) if parts else images.new_zeros((0, 3, images.shape[2] * model.scale, images.shape[3] * model.scale))


def comparison_grid(hr: torch.Tensor, lr: torch.Tensor, sr: torch.Tensor, gutter: int = 2) -> np.ndarray:
    """One row per image: LR (pixel-repeated to the HR size), bicubic upsampling of LR, SR, HR.

    Args:
        hr: uint8 [N, 3, H, W] references; lr: their low-resolution inputs [N, 3, h, w]; sr: the network's
            outputs [N, 3, H, W].
        gutter: white pixels between tiles.

    Returns:
        uint8 RGB [N*(H+gutter)-gutter, 4*(W+gutter)-gutter, 3].
    """
    n, _, height, width = hr.shape
    nearest = torch.nn.functional.interpolate(lr.float(), size=(height, width), mode="nearest").to(torch.uint8)
    columns = [nearest, resize_bicubic(lr, (height, width)), sr, hr]
    grid = np.full((n * (height + gutter) - gutter, 4 * (width + gutter) - gutter, 3), 255, np.uint8)
    for row in range(n):
        for col, tiles in enumerate(columns):
            top, left = row * (height + gutter), col * (width + gutter)
            grid[top : top + height, left : left + width] = tiles[row].permute(1, 2, 0).numpy()
    return grid
