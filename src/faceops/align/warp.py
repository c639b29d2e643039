"""Warp a face onto the ArcFace 5-point template (the crop every faceops model is trained on).

Convention: pixel centres sit at integer coordinates, for landmarks, for the template and for
``cv2.warpAffine``; no half-pixel shift is applied anywhere.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceops.align.similarity import estimate_similarity
from faceops.labels import ARCFACE_TEMPLATE_112

__all__ = ["template_for_size", "alignment_matrix", "align_face"]


def template_for_size(size: int) -> np.ndarray:
    """The ArcFace template scaled from 112 px to ``size`` px.

    Returns:
        [5, 2] float64 (x, y) in pixels of a ``size`` x ``size`` crop.
    """
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8 (pixels of the square crop), got {size!r}")
    return ARCFACE_TEMPLATE_112 * (size / 112.0)


def alignment_matrix(landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Similarity that maps the 5 landmarks of a source image onto the scaled template.

    Args:
        landmarks: [5, 2] (x, y) in source-image pixels, order ``faceops.labels.LANDMARK_NAMES``.
        size: side of the aligned crop in pixels.

    Returns:
        [2, 3] float64 affine matrix, source -> crop.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"landmarks must be [5, 2] (x, y), got shape {landmarks.shape}")
    return estimate_similarity(landmarks, template_for_size(size))


def align_face(image_rgb: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Crop and align one face to the ArcFace template.

    Bilinear interpolation; pixels that fall outside the source image are black (constant 0), not
    replicated: replicating smears the border row into long streaks across the crop, which look
    like texture to a model, while black is plainly "no data".

    Args:
        image_rgb: [H, W, 3] uint8 RGB image.
        landmarks: [5, 2] (x, y) in ``image_rgb`` pixels, order ``faceops.labels.LANDMARK_NAMES``.
        size: side of the output in pixels; the template is scaled by ``size / 112``.

    Returns:
        [size, size, 3] uint8 RGB aligned face.

    Raises:
        ValueError: wrong image shape/dtype or landmarks shape.
        DegenerateLandmarksError: the landmarks coincide.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            f"image_rgb must be [H, W, 3] uint8, got shape {image_rgb.shape} dtype {image_rgb.dtype}"
        )
    matrix = alignment_matrix(landmarks, size)
    return cv2.warpAffine(
        image_rgb,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
