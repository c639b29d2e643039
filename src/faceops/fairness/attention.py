"""Gradient attention maps (Grad-CAM of the identity score) and Top-N erasing of the most attended cells.

GABN (Huang et al., "Gradient Attention Balance Network: Mitigating Face Recognition Racial Bias via Gradient
Attention", CVPR Workshops 2023, arXiv 2304.02284) tracks where a recogniser looks with the gradient attention
map of its identity score (Grad-CAM: Selvaraju et al., ICCV 2017, arXiv 1610.02391) and erases the most
attended regions so the network spreads its attention. For a feature map ``A`` [C, H, W] and a score ``s``:

    alpha_c = mean_hw ds/dA_c,   map = ReLU(sum_c alpha_c A_c) / max(...)   ([H, W] in [0, 1])

Computed with ``create_graph=True`` the map is differentiable in the network's weights (through ``A`` and,
by double backpropagation, through ``alpha``), so a loss on it trains the backbone. Our reconstruction (no
public code): max-normalisation, the map of a zero score being all zero, erasing cell-sized squares to a
fill value, and ties between equal cells going to the lower (row-major) index.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["erase_cells", "gradient_attention", "normalize_maps", "top_n_cells"]


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Non-negative maps [B, H, W] divided by their own maximum (an all-zero map stays zero)."""
    peak = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / peak[:, None, None]


def gradient_attention(score: torch.Tensor, fmap: torch.Tensor, *, create_graph: bool = True) -> torch.Tensor:
    """Grad-CAM maps of ``score`` over ``fmap``, one per row, in [0, 1] with maximum 1 (or all 0).

    Args:
        score: a scalar in ``fmap``'s graph, the sum of the rows' scores (row ``i``'s map is its gradient
            with respect to ``fmap[i]``, so rows must not mix in the score).
        fmap: the feature map [B, C, H, W] the score was computed from.
        create_graph: keep the graph of the gradient (double backprop), so a loss on the maps trains
            what produced ``fmap``; False gives maps for decisions only (erasing).

    Returns:
        maps [B, H, W] float32; all zero for a row whose score does not depend on ``fmap``.
    """
    (grads,) = torch.autograd.grad(score, fmap, create_graph=create_graph, retain_graph=True, allow_unused=True)
    if grads is None:  # the score does not depend on the features at all
        return fmap.new_zeros(fmap.shape[0], *fmap.shape[2:], dtype=torch.float32)
    weights = grads.float().mean(dim=(2, 3), keepdim=True)  # alpha [B, C, 1, 1]
    return normalize_maps(F.relu((weights * fmap.float()).sum(dim=1)))


def top_n_cells(maps: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` largest cells of each map [B, H, W] as a bool mask [B, H, W] (exactly ``n`` True per map).

    Ties go to the lower row-major index (a stable sort), so the same map always gives the same cells.

    Raises:
        ValueError: ``n`` is not in ``[1, H * W]``.
    """
    cells = maps.shape[1] * maps.shape[2]
    if not 1 <= n <= cells:
        raise ValueError(f"top-N erasing needs 1 <= N <= {cells} cells of a {tuple(maps.shape[1:])} map, got N = {n}")
    order = torch.sort(maps.flatten(1), dim=1, descending=True, stable=True).indices[:, :n]  # [B, n]
    mask = torch.zeros(maps.shape[0], cells, dtype=torch.bool, device=maps.device)
    return mask.scatter(1, order, True).view_as(maps)


def erase_cells(images: torch.Tensor, cells: torch.Tensor, fill: int = 128) -> torch.Tensor:
    """A copy of ``images`` [B, C, H, W] with the region of every True cell of ``cells`` [B, h, w] set to ``fill``.

    Cell ``(r, c)`` covers rows ``r*H/h .. (r+1)*H/h`` and columns likewise (nearest-neighbour upsampling,
    so a 7x7 grid on 112 px erases 16x16 squares). Pixels outside erased cells are untouched.
    """
    if images.shape[0] != cells.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {cells.shape[0]} cell masks; give one mask per image")
    region = F.interpolate(cells[:, None].float(), size=images.shape[-2:], mode="nearest").bool()  # [B, 1, H, W]
    return torch.where(region, torch.full_like(images, fill), images)
