"""Semi-supervised Cut-Occlude: paste keypoint-centred patches of other images onto pseudo-keypoints.

Why: occluding a joint with another image's joint region forces the student to infer that joint
from context, and because the paste lands on the image's own pseudo-keypoints, it occludes exactly
where the pose model has to look. For each image ``i`` and each of ``n_patches`` draws: pick one of
``i``'s pseudo-keypoints (jittered by ``N(0, jitter^2)`` px), a random image ``j`` of the batch and a
random pseudo-keypoint of ``j``; cut a box of random half sizes around ``j``'s keypoint and paste it
centred on ``i``'s. Parts of the cut box outside ``j`` paste as zeros; parts of the paste box outside
``i`` are dropped. Donors are always read from the unmodified batch.

Deviation from the released code, on purpose: the released paste uses the keypoint's y as the column
and x as the row; here x is the column and y the row, as the method describes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["CutOcclude", "cut_occlude"]


@dataclass(frozen=True)
class CutOcclude:
    """Result of :func:`cut_occlude`.

    Attributes:
        images: [N, C, H, W] occluded copy of the input.
        boxes: [N, P, 4] int64 pasted boxes (x0, y0, x1, y1), end exclusive, clipped to the image.
        centres: [N, P, 2] int64 (x, y) pixel each box is centred on (before clipping).
    """

    images: torch.Tensor
    boxes: torch.Tensor
    centres: torch.Tensor


def _window(centre: int, half: int, limit: int) -> tuple[int, int, int]:
    """Clip the window ``centre +- half`` (inclusive) to ``[0, limit)``: (start, stop, offset into the patch)."""
    start, stop = centre - half, centre + half + 1
    lo, hi = max(start, 0), min(stop, limit)
    return lo, max(hi, lo), lo - start


def cut_occlude(
    images: torch.Tensor,
    points: torch.Tensor,
    *,
    generator: torch.Generator,
    n_patches: int = 2,
    half_size: tuple[int, int] = (10, 20),
    jitter: float = 10.0,
) -> CutOcclude:
    """Occlude each image at ``n_patches`` of its pseudo-keypoints with patches cut from the batch.

    Args:
        images: [N, C, H, W].
        points: [N, J, 2] pseudo-keypoints (x, y) in image pixels, used as paste centres for their
            own image and as cut centres when the image is the donor.
        generator: the random source (CPU).
        n_patches: patches per image (2 in SSPCM).
        half_size: half width/height range [lo, hi) in pixels, drawn per axis (SSPCM: 10..20 at 256x192).
        jitter: standard deviation of the paste-centre jitter, pixels (0 = exactly on the keypoint).

    Returns:
        :class:`CutOcclude`.
    """
    lo, hi = half_size
    if not 0 <= lo < hi:
        raise ValueError(f"half_size={half_size} must satisfy 0 <= lo < hi (pixels)")
    n, _, height, width = images.shape
    if points.shape[:1] != (n,) or points.shape[-1] != 2:
        raise ValueError(f"points must be [N={n}, J, 2]; got {tuple(points.shape)}")
    n_joints = points.shape[1]
    pts = points.detach().cpu().to(torch.float64)
    joint = torch.randint(n_joints, (n, n_patches), generator=generator)
    offset = jitter * torch.randn(n, n_patches, 2, generator=generator, dtype=torch.float64)
    centres = torch.round(pts.gather(1, joint[..., None].expand(-1, -1, 2)) + offset).to(torch.int64)
    donor = torch.randint(n, (n, n_patches), generator=generator)
    donor_joint = torch.randint(n_joints, (n, n_patches), generator=generator)
    halves = torch.randint(lo, hi, (n, n_patches, 2), generator=generator)
    out = images.clone()
    boxes = torch.zeros(n, n_patches, 4, dtype=torch.int64)
    for i in range(n):
        for k in range(n_patches):
            j = int(donor[i, k])
            hw, hh = int(halves[i, k, 0]), int(halves[i, k, 1])
            sx, sy = (int(v) for v in torch.round(pts[j, donor_joint[i, k]]))
            patch = images.new_zeros(images.shape[1], 2 * hh + 1, 2 * hw + 1)
            x0, x1, px = _window(sx, hw, width)
            y0, y1, py = _window(sy, hh, height)
            patch[:, py : py + y1 - y0, px : px + x1 - x0] = images[j, :, y0:y1, x0:x1]
            cx, cy = int(centres[i, k, 0]), int(centres[i, k, 1])
            x0, x1, px = _window(cx, hw, width)
            y0, y1, py = _window(cy, hh, height)
            out[i, :, y0:y1, x0:x1] = patch[:, py : py + y1 - y0, px : px + x1 - x0]
            boxes[i, k] = torch.tensor([x0, y0, x1, y1])
    return CutOcclude(images=out, boxes=boxes, centres=centres)
