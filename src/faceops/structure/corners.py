"""Corners from heatmaps (per-channel NMS) and the corner sets the edge classifier trains on.

Detection follows HEAT's inference (Chen, Qian and Furukawa, CVPR 2022, arXiv 2111.15143: local maxima above
a low threshold, 0.01) with CornerFormer's direction channels (Tian et al., arXiv 2304.07072): non-maximum
suppression runs **within each channel**, the channels' detections are united, and detections of different
channels closer than ``merge_px`` are merged (the higher score stays). This is our reconstruction of the
paper's channel handling. Suppression is greedy by score within ``nms_radius`` px (Euclidean); HEAT keeps
the maxima of a 5x5 window, which lets two equal peaks 3 px apart both survive, so we suppress by
distance instead: then two corners 3 px apart merge in one channel and both stay in two.

Training candidates follow HEAT's mix of prediction and ground truth: each ground-truth corner takes the
position of the nearest unmatched detection within ``match_px`` (5 px in HEAT), the other detections join as
corners of no edge (up to ``max_corners``, in a random order), so the edge classifier learns on corners as
the detector places them.

Papers: CornerFormer: Hongbo Tian, Yulong Li, Linzhi Huang, Xu Ling, Yue Yang and Jiani Hu, "CornerFormer: Boosting
Corner Representation for Fine-Grained Structured Reconstruction", arXiv preprint 2304.07072, 2023; HEAT: Jiacheng
Chen, Yiming Qian and Yasutaka Furukawa, "HEAT: Holistic Edge Attention Transformer for Structured Reconstruction",
CVPR 2022, arXiv 2111.15143.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

__all__ = ["Detections", "detect_corners", "mix_with_ground_truth", "sort_corners"]


@dataclass(frozen=True)
class Detections:
    """Detected corners of one image, best score first.

    Attributes:
        xy: ``[K, 2]`` float64 (x, y) pixels.
        score: ``[K]`` heatmap probability at the peak.
        channel: ``[K]`` int64 channel it was found in.
    """

    xy: np.ndarray
    score: np.ndarray
    channel: np.ndarray


def _greedy_keep(xy: np.ndarray, radius: float) -> np.ndarray:
    """Indices kept by greedy suppression of points (in the given order) within ``radius`` of a kept one."""
    close = ((xy[:, None] - xy[None]) ** 2).sum(-1) <= radius**2  # [K, K]
    suppressed = np.zeros(len(xy), bool)
    kept = []
    for i in range(len(xy)):
        if not suppressed[i]:
            kept.append(i)
            suppressed |= close[i]
    return np.array(kept, np.int64)


def detect_corners(
    prob: np.ndarray, *, threshold: float = 0.01, nms_radius: float = 3.0, merge_px: float = 2.0, max_peaks: int = 256
) -> Detections:
    """Corners of one image from its ``[C, H, W]`` corner probabilities.

    Args:
        prob: per-channel corner probabilities (sigmoid of the model's logits).
        threshold: a peak must exceed it (HEAT: 0.01).
        nms_radius: within one channel, a peak within this many px of a stronger kept peak is dropped.
        merge_px: across channels, a detection closer than this to a stronger one is dropped.
        max_peaks: at most this many of a channel's 3x3 local maxima (the strongest) enter suppression,
            which bounds the work on an untrained, flat heatmap.

    Returns:
        :class:`Detections`, best score first (ties: channel, then y, then x).
    """
    if prob.ndim != 3:
        raise ValueError(f"prob must be [C, H, W], got shape {prob.shape}")
    xs, ys, scores, channels = [], [], [], []
    for c, plane in enumerate(prob.astype(np.float32)):
        peaks = (plane >= cv2.dilate(plane, np.ones((3, 3), np.uint8))) & (plane > threshold)
        y, x = np.nonzero(peaks)
        s = plane[y, x]
        order = np.lexsort((x, y, -s))[:max_peaks]
        keep = order[_greedy_keep(np.stack([x[order], y[order]], 1).astype(np.float64), nms_radius)]
        xs.append(x[keep])
        ys.append(y[keep])
        scores.append(s[keep])
        channels.append(np.full(len(keep), c))
    xy = np.stack([np.concatenate(xs), np.concatenate(ys)], 1).astype(np.float64)
    score, channel = np.concatenate(scores).astype(np.float64), np.concatenate(channels).astype(np.int64)
    order = np.lexsort((xy[:, 0], xy[:, 1], channel, -score))
    xy, score, channel = xy[order], score[order], channel[order]
    keep = _greedy_keep(xy, merge_px - 1e-9)
    return Detections(xy[keep], score[keep], channel[keep])


def sort_corners(xy: np.ndarray) -> np.ndarray:
    """Order of corners by (y, x), HEAT's order: the index pairs of edges then run top to bottom."""
    return np.lexsort((xy[:, 0], xy[:, 1]))


def mix_with_ground_truth(
    detected: np.ndarray, truth: np.ndarray, adjacency: np.ndarray, *, match_px: float, max_corners: int,
    generator: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The corners and edge labels one training image gives the edge classifier (HEAT's mix; module docstring).

    Args:
        detected: ``[K, 2]`` detections of the current model, best first.
        truth: ``[N, 2]`` ground-truth corners.
        adjacency: ``[N, N]`` bool ground-truth edges.
        match_px: a ground-truth corner takes a detection's place within this distance.
        max_corners: at most this many corners in all (ground truth always included).
        generator: orders the unmatched detections that join.

    Returns:
        ``xy`` [M, 2] sorted by (y, x) and ``labels`` [M, M] bool (True: the pair is a ground-truth edge).
    """
    xy = truth.astype(np.float64).copy()
    taken = np.zeros(len(detected), bool)
    if len(detected):
        for k in range(len(truth)):
            d = np.sqrt(((detected - truth[k]) ** 2).sum(1))
            d[taken] = np.inf
            best = int(np.argmin(d))
            if d[best] < match_px:
                taken[best] = True
                xy[k] = detected[best]
    extra = np.flatnonzero(~taken)
    extra = extra[torch.randperm(len(extra), generator=generator).numpy()][: max(0, max_corners - len(truth))]
    xy = np.concatenate([xy, detected[extra].reshape(-1, 2)])
    labels = np.zeros((len(xy), len(xy)), bool)
    labels[: len(truth), : len(truth)] = adjacency
    order = sort_corners(xy)
    return xy[order], labels[np.ix_(order, order)]
