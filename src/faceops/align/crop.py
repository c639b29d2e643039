"""Loose square crops around a face's points or a person's box, and the way back to image coordinates.

Why: the keypoint networks (``faceops.keypoints``) see a small square window around a face (or a
person), not the whole photo. The window comes from any rough set of points (given landmarks on
labelled faces, the detector's landmarks on unlabelled ones) or from a box (a COCO person's bbox),
so the network learns the *precise* positions while the crop only has to be roughly right. The
crop is an axis-aligned scale + shift, so mapping predictions back is exact: ``x_image = (x_crop - t) / s``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["box_matrix", "crop_matrix", "from_crop", "square_matrix", "to_crop", "warp_crop"]


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
    side = spread * np.linalg.norm(pts - centre, axis=1).mean()
    if side <= 0:
        raise ValueError("points are all identical: a crop around them has no size")
    return square_matrix(centre, side, size, zoom=zoom, shift=shift)


def box_matrix(
    box: np.ndarray, size: int, *, scale: float = 1.25, zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Affine [2, 3] onto a ``size`` x ``size`` crop: a square around a box, for bodies.

    Why a square of the longer side: a person box is tall and thin; squashing it into the square
    input would distort the limbs, so the whole box fits and the short side gets context instead.

    Args:
        box: [4] (x, y, w, h) image pixels, COCO's bbox convention (w, h >= 0, finite).
        size: crop side in pixels.
        scale: crop side = ``scale`` x max(w, h) (> 1 keeps some context around the person).
        zoom, shift: augmentations as in :func:`crop_matrix`.

    Raises:
        ValueError: the box is not 4 finite numbers or has no extent (w = h = 0).
    """
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.isfinite(values).all() or values[2:].min() < 0 or values[2:].max() <= 0:
        raise ValueError(f"box must be 4 finite numbers (x, y, w >= 0, h >= 0) with w or h > 0, got {box!r}")
    x, y, w, h = values
    return square_matrix(np.array([x + w / 2, y + h / 2]), scale * max(w, h), size, zoom=zoom, shift=shift)


def square_matrix(
    centre: np.ndarray, side: float, size: int, *, zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Affine [2, 3] mapping a square window (``centre`` [2] (x, y), ``side`` px) onto the crop.

    ``zoom`` multiplies the side, ``shift`` moves the centre by that fraction of the (zoomed) side;
    the window's centre lands on the crop's centre ``size / 2``.
    """
    side = side * zoom
    if not side > 0:
        raise ValueError(f"window side {side} must be > 0 (side x zoom); pass a positive zoom")
    centre = np.asarray(centre, dtype=np.float64) + np.asarray(shift, dtype=np.float64) * side
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
