"""HEAT's structured-reconstruction metrics: corner, edge and region precision, recall and F1.

As HEAT evaluates (Chen, Qian and Furukawa, CVPR 2022, arXiv 2111.15143; ``metrics/get_metric.py``), and
CornerFormer (Tian et al., arXiv 2304.07072) reports:

- corners: each predicted corner, in prediction order, is matched to its nearest ground-truth corner if that
  is within ``match_px`` (8) and not yet matched: a true positive; otherwise a false positive (so a
  duplicate prediction counts once: one TP and one FP);
- edges: a predicted edge is a true positive when both its corners are matched and the two matched
  ground-truth corners form a ground-truth edge;
- regions: HEAT's rasterised regions of both graphs (``faceops.structure.graph.region_masks``: edges 1 px
  wide, 4-connected parts, background and parts under 20 px left out); each predicted region in order takes
  the ground-truth region of highest IoU, a true positive if that IoU is >= ``iou`` (0.7) and the region is
  not yet taken.

Counts are summed over the data set; precision = TP / predictions, recall = TP / ground truth, F1 their
harmonic mean (0 where a denominator is 0).

Papers: CornerFormer: Hongbo Tian, Yulong Li, Linzhi Huang, Xu Ling, Yue Yang and Jiani Hu, "CornerFormer: Boosting
Corner Representation for Fine-Grained Structured Reconstruction", arXiv preprint 2304.07072, 2023; HEAT: Jiacheng
Chen, Yiming Qian and Yasutaka Furukawa, "HEAT: Holistic Edge Attention Transformer for Structured Reconstruction",
CVPR 2022, arXiv 2111.15143.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from faceops.structure.graph import PlanarGraph, region_masks

__all__ = ["Counts", "match_corners", "score_graph", "summarize_counts"]

KINDS = ("corner", "edge", "region")


@dataclass(frozen=True)
class Counts:
    """True positives, predictions and ground-truth items of one kind (corner, edge or region)."""

    tp: int
    predicted: int
    truth: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.predicted + other.predicted, self.truth + other.truth)


def match_corners(predicted: np.ndarray, truth: np.ndarray, match_px: float = 8.0) -> dict[int, int]:
    """HEAT's greedy one-to-one corner matching: predicted index -> ground-truth index (module docstring)."""
    matched: dict[int, int] = {}
    taken = np.zeros(len(truth), bool)
    for i, point in enumerate(predicted):
        if not len(truth):
            break
        d = np.sqrt(((truth - point) ** 2).sum(1))
        nearest = int(np.argmin(d))
        if d[nearest] <= match_px and not taken[nearest]:
            taken[nearest] = True
            matched[i] = nearest
    return matched


def _region_counts(predicted: PlanarGraph, truth: PlanarGraph, shape: tuple[int, int], iou: float,
                   min_area: int) -> Counts:  # fmt: skip
    pred_regions = region_masks(predicted, *shape, min_area=min_area)
    true_regions = region_masks(truth, *shape, min_area=min_area)
    taken = np.zeros(len(true_regions), bool)
    tp = 0
    for region in pred_regions:
        ious = [np.logical_and(region, t).sum() / np.logical_or(region, t).sum() for t in true_regions]
        best = int(np.argmax(ious)) if ious else -1
        if best >= 0 and ious[best] >= iou and not taken[best]:
            taken[best] = True
            tp += 1
    return Counts(tp, len(pred_regions), len(true_regions))


def score_graph(
    predicted: PlanarGraph, truth: PlanarGraph, shape: tuple[int, int], *, match_px: float = 8.0, iou: float = 0.7,
    min_area: int = 20,
) -> dict[str, Counts]:  # fmt: skip
    """Corner, edge and region counts of one image (``shape`` = (height, width) for the regions)."""
    matched = match_corners(predicted.corners, truth.corners, match_px)
    true_edges = {(int(i), int(j)) for i, j in truth.edges}
    edge_tp = 0
    for i, j in predicted.edges.tolist():
        if i in matched and j in matched:
            a, b = sorted((matched[i], matched[j]))
            edge_tp += (a, b) in true_edges
    return {
        "corner": Counts(len(matched), len(predicted.corners), len(truth.corners)),
        "edge": Counts(edge_tp, len(predicted.edges), len(truth.edges)),
        "region": _region_counts(predicted, truth, shape, iou, min_area),
    }


def summarize_counts(per_image: Iterable[dict[str, Counts]]) -> dict[str, float | int]:
    """Counts summed over images -> ``<kind>/{precision,recall,f1,tp,predicted,truth}`` for corner, edge, region."""
    totals = {kind: Counts(0, 0, 0) for kind in KINDS}
    for counts in per_image:
        totals = {kind: totals[kind] + counts[kind] for kind in KINDS}
    out: dict[str, float | int] = {}
    for kind, c in totals.items():
        precision = c.tp / c.predicted if c.predicted else 0.0
        recall = c.tp / c.truth if c.truth else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.update({f"{kind}/precision": precision, f"{kind}/recall": recall, f"{kind}/f1": f1,
                    f"{kind}/tp": c.tp, f"{kind}/predicted": c.predicted, f"{kind}/truth": c.truth})  # fmt: skip
    return out
