"""Keypoint accuracy: NME (inter-ocular), PCK, and COCO OKS AP through pycocotools.

Arrays are numpy, coordinates (x, y) in pixels. ``visible`` masks follow the label contract: a
missing joint is excluded, never counted as an error.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from faceops.labels import LANDMARK_NAMES

__all__ = ["inter_ocular", "nme", "pck", "oks_ap", "COCO_OKS_STATS"]

#: Names of pycocotools' 10 keypoint summary numbers, in its order.
COCO_OKS_STATS: tuple[str, ...] = ("AP", "AP50", "AP75", "AP_M", "AP_L", "AR", "AR50", "AR75", "AR_M", "AR_L")

_LEFT_EYE, _RIGHT_EYE = LANDMARK_NAMES.index("left_eye"), LANDMARK_NAMES.index("right_eye")


def inter_ocular(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the eye centres of 5-point landmarks [N, 5, 2] -> [N]."""
    return np.linalg.norm(landmarks[:, _LEFT_EYE] - landmarks[:, _RIGHT_EYE], axis=-1)


def _distances(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be [N, J, 2]")
    mask = np.ones(gt.shape[:2], dtype=bool) if visible is None else np.asarray(visible, dtype=bool)
    return np.linalg.norm(np.asarray(pred, np.float64) - gt, axis=-1), mask


def nme(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray | None = None, visible: np.ndarray | None = None) -> float:
    """Normalised mean error: per image, mean joint error divided by ``norm``, averaged over images.

    Args:
        pred, gt: [N, J, 2].
        norm: [N] normaliser; default the inter-ocular distance of ``gt`` (5-point landmarks).
        visible: optional [N, J] mask; images without a visible joint are skipped.
    """
    dist, mask = _distances(pred, gt, visible)
    norm = inter_ocular(np.asarray(gt, np.float64)) if norm is None else np.asarray(norm, np.float64)
    if np.any(norm <= 0):
        raise ValueError("a normaliser is <= 0 (coincident eyes?); pass norm= explicitly or drop those images")
    count = mask.sum(axis=1)
    keep = count > 0
    per_image = (dist * mask).sum(axis=1)[keep] / count[keep] / norm[keep]
    return float(per_image.mean())


def pck(
    pred: np.ndarray, gt: np.ndarray, norm: np.ndarray, *, alpha: float = 0.1, visible: np.ndarray | None = None
) -> float:
    """Fraction of visible joints within ``alpha * norm`` pixels of the truth.

    Args:
        pred, gt: [N, J, 2].
        norm: [N] per-image length (inter-ocular distance, bbox size, head size for PCKh).
        alpha: threshold as a fraction of ``norm``.
        visible: optional [N, J] mask.
    """
    dist, mask = _distances(pred, gt, visible)
    hit = dist <= alpha * np.asarray(norm, np.float64)[:, None]
    return float(hit[mask].mean())


def oks_ap(ground_truth: dict[str, Any], detections: list[dict[str, Any]], *, sigmas: np.ndarray | None = None) -> dict[str, float]:
    """COCO keypoint AP/AR (OKS) through pycocotools.

    Args:
        ground_truth: a COCO person-keypoints dict (``images``, ``annotations``, ``categories``),
            already loaded (file reading is the caller's job).
        detections: COCO results: ``{"image_id", "category_id", "keypoints": [x, y, v] * J, "score"}``.
        sigmas: per-joint OKS sigmas [J]; default COCO's 17 body-joint sigmas (required for J != 17).

    Returns:
        ``COCO_OKS_STATS`` names -> values (-1 where pycocotools has nothing to score).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not detections:
        raise ValueError("no detections to score; OKS AP needs at least one result")
    gt = COCO()
    gt.dataset = {"info": {}, "licenses": [], **ground_truth}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress; keep library output clean
        gt.createIndex()
        dt = gt.loadRes(detections)
        evaluator = COCOeval(gt, dt, iouType="keypoints")
        if sigmas is not None:
            evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(COCO_OKS_STATS, (float(v) for v in evaluator.stats), strict=True))
