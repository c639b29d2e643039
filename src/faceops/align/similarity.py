"""Least-squares similarity transform between two 2-D point sets (Umeyama, 1991).

Umeyama, "Least-squares estimation of transformation parameters between two point patterns",
IEEE TPAMI 13(4), 1991. Written here in numpy (no skimage) because alignment needs exactly one
closed-form estimator, and its reflection handling must be explicit: a mirrored face must never
come out of the aligner looking like a valid one.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DegenerateLandmarksError", "estimate_similarity"]


class DegenerateLandmarksError(ValueError):
    """The points have (almost) no spread, so no similarity transform is defined by them."""


def _spread(points: np.ndarray) -> float:
    """Mean squared distance of the points to their centroid."""
    return float(np.mean(np.sum((points - points.mean(axis=0)) ** 2, axis=1)))


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (scale, rotation, translation) that maps ``src`` onto ``dst``.

    Minimises ``sum_i ||s R src_i + t - dst_i||^2`` over s > 0, R in SO(2) and t. Reflections are
    excluded (det R = +1) even when a mirrored fit would be closer, because a reflected face is a
    different face for every downstream model.

    Args:
        src: [N, 2] source points (x, y), N >= 2.
        dst: [N, 2] destination points, same order as ``src``.

    Returns:
        [2, 3] float64 matrix ``[s R | t]``, usable directly with ``cv2.warpAffine``.

    Raises:
        ValueError: shapes differ, are not [N, 2] with N >= 2, or values are not finite.
        DegenerateLandmarksError: all points of ``src`` or of ``dst`` (almost) coincide, or ``dst``
            is an exact mirror image of ``src`` so no rotation fits at all.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2 or src.shape != dst.shape:
        raise ValueError(
            f"src and dst must both be [N, 2] with N >= 2 and the same N; got {src.shape} and {dst.shape}"
        )
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("src and dst must be finite; got NaN or inf (drop or fix those landmarks)")

    # Spread below (1e-6 of the coordinate magnitude)^2 means the points are one point up to rounding.
    magnitude = max(1.0, float(np.abs(src).max()), float(np.abs(dst).max()))
    var_src, var_dst = _spread(src), _spread(dst)
    if min(var_src, var_dst) <= (1e-6 * magnitude) ** 2:
        raise DegenerateLandmarksError(
            f"landmarks have no spread (mean squared distance to centroid: src {var_src:.3g}, dst {var_dst:.3g}); "
            "a similarity needs at least two distinct points: check the landmark source"
        )

    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    cov = dst_c.T @ src_c / len(src)  # [2, 2]
    u, sigma, vt = np.linalg.svd(cov)
    # Flip the weakest axis when the best orthogonal fit is a reflection (Umeyama's S matrix).
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ np.diag(d) @ vt
    scale = float(sigma @ d) / var_src
    if scale <= 1e-9:
        raise DegenerateLandmarksError(
            "the best reflection-free fit has zero scale: dst is a mirror image of src "
            "(check the landmark order, image left/right as seen)"
        )
    translation = mu_dst - scale * rotation @ mu_src
    return np.hstack([scale * rotation, translation[:, None]])
