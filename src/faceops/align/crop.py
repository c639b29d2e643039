"""Loose square crops around a face's points, and the way back to image coordinates.

Why: the keypoint networks (``faceops.pseudo``) see a small square window around a face, not the
whole photo. The window comes from any rough set of points (given landmarks on labelled faces, the
detector's landmarks on unlabelled ones), so the network learns the *precise* positions while the
crop only has to be roughly right. The crop is an axis-aligned scale + shift, so mapping predictions
back is exact: ``x_image = (x_crop - t) / s``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["crop_matrix", "from_crop", "to_crop", "warp_crop"]


def crop_matrix(
    points: np.ndarray, size: int, *, spread: float = 3.5, zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Affine [2, 3] mapping image pixels onto a ``size`` x ``size`` crop around ``points``.

    Args:
        points: [J, 2] (x, y) image pixels (J >= 2, finite).
        size: crop side in pixels.
        spread: crop side = ``spread`` x the mean distance of the points from their centroid.
        zoom: multiplies the crop side (> 1 shows more context); a training augmentation.
        shift: (dx, dy) of the crop centre in units of the crop side; a training augmentation.

    Raises:
        ValueError: fewer than two points, non-finite points, or all points identical.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2 or not np.isfinite(pts).all():
        raise ValueError(f"points must be [J >= 2, 2] finite (x, y), got shape {pts.shape}")
    centre = pts.mean(axis=0)
    side = spread * np.linalg.norm(pts - centre, axis=1).mean() * zoom
    if side <= 0:
        raise ValueError("points are all identical: a crop around them has no size")
    centre = centre + np.asarray(shift, dtype=np.float64) * side
    scale = size / side
    return np.array([[scale, 0.0, size / 2 - scale * centre[0]], [0.0, scale, size / 2 - scale * centre[1]]])


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The crop [size, size, C] of an HWC image (edges replicated where the window leaves the photo)."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def to_crop(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Image points [..., 2] -> crop points (``warpAffine`` maps pixel centres by the same matrix)."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def from_crop(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Crop points [..., 2] -> image points (exact inverse of ``to_crop`` for these scale+shift crops)."""
    pts = np.asarray(points, dtype=np.float64)
    return (pts - matrix[:, 2]) @ np.linalg.inv(matrix[:, :2]).T
