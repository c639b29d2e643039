"""The one low-resolution degradation: antialiased bicubic resizing, as PIL's ``BICUBIC`` and MATLAB's ``imresize``.

Why one function: the degradation decides everything downstream. Super-resolution networks are trained on
low-resolution images made with an antialiased bicubic kernel (MATLAB ``imresize``, as FIWHN's DIV2K data,
arXiv:2212.14181); fed images shrunk *without* antialiasing (e.g. OpenCV ``INTER_CUBIC``), they sharpen the
aliasing and can end below plain bicubic upsampling. LRFR (arXiv:2302.05621) makes its low-resolution views
with PIL's bicubic resize. So the ``sr`` stage's training pairs, LRFR's low-resolution views and the
low-resolution evaluation probes all come from :func:`resize_bicubic` here.

Implementation: ``torch.nn.functional.interpolate(mode="bicubic", antialias=True)``, whose kernel (a = -0.5,
support widened by the shrink factor) is PIL's; uint8 images are rounded after each resize as PIL does, and
then differ from PIL's by at most one grey level (PIL rounds its fixed-point weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["degrade", "resize_bicubic", "scaled_side"]


def resize_bicubic(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of a batch.

    Args:
        images: [B, C, H, W], uint8 (pixels) or floating point (any range).
        size: the output side (square) or ``(height, width)``.

    Returns:
        [B, C, h, w] of the input's dtype; uint8 output is rounded and clamped to [0, 255], floating
        output is not clamped (bicubic overshoots at edges).

    Raises:
        ValueError: not a 4-d batch, or a non-positive output size.
    """
    if images.dim() != 4:
        raise ValueError(f"resize_bicubic expects a batch [B, C, H, W], got shape {tuple(images.shape)}")
    out_size = (size, size) if isinstance(size, int) else tuple(size)
    if min(out_size) < 1:
        raise ValueError(f"resize_bicubic needs an output size of at least 1 px, got {out_size}")
    if tuple(images.shape[-2:]) == out_size:
        return images.clone()
    resized = F.interpolate(images.float(), size=out_size, mode="bicubic", antialias=True, align_corners=False)
    if images.dtype == torch.uint8:
        return resized.round_().clamp_(0, 255).to(torch.uint8)
    return resized.to(images.dtype)


def degrade(images: torch.Tensor, low: int | tuple[int, int], size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """A low-resolution version of ``images``: bicubic down to ``low`` px, then back up to ``size``.

    Args:
        images: [B, C, H, W] uint8 or float.
        low: the low-resolution side (e.g. 14 for a 14x14 px face) or ``(height, width)``.
        size: the output size (default: the input's ``(H, W)``).

    Returns:
        [B, C, *size], same dtype (uint8 is rounded after each step, as PIL's two resizes).
    """
    return resize_bicubic(resize_bicubic(images, low), size if size is not None else tuple(images.shape[-2:]))


def scaled_side(side_at_112: int, image_size: int) -> int:
    """A resolution given for 112 px faces, scaled to faces of ``image_size`` px (rounded, at least 1)."""
    return max(1, round(side_at_112 * image_size / 112))
