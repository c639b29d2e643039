"""Baselines with their one free parameter chosen on a labelled set (never on the set they cluster).

Why: a baseline with a hand-picked threshold is either secretly tuned on the evaluated data or
unfairly weak. Each baseline here gets the supervision the linkage GCN gets: the labelled source,
on which the parameter with the best pairwise F is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceops.cluster.baselines import agglomerative, hdbscan_labels, threshold_cc
from faceops.cluster.knn import knn
from faceops.cluster.metrics import pairwise

__all__ = ["BASELINE_GRIDS", "baseline_labels", "label_confidence", "tune_baseline"]

#: Candidate values per baseline: cosine threshold, average-linkage cosine distance, HDBSCAN min size.
BASELINE_GRIDS: dict[str, tuple[float, ...]] = {
    "threshold": tuple(np.round(np.arange(0.15, 0.91, 0.05), 2)),
    "agglomerative": tuple(np.round(np.arange(0.1, 0.91, 0.05), 2)),
    "hdbscan": (2, 3, 4, 6, 8, 12, 16),
}


def baseline_labels(method: str, features: np.ndarray, value: float, *, k: int = 10) -> np.ndarray:
    """Labels [N] of ``method`` at parameter ``value`` (``BASELINE_GRIDS`` says which parameter)."""
    x = np.asarray(features, dtype=np.float32)
    if method == "threshold":
        return threshold_cc(x, k=min(k, len(x) - 1), threshold=float(value))
    if method == "agglomerative":
        return agglomerative(x, distance_threshold=float(value))
    if method == "hdbscan":
        return hdbscan_labels(x, min_cluster_size=int(value))
    raise ValueError(f"unknown baseline {method!r}; expected one of {sorted(BASELINE_GRIDS)}")


def tune_baseline(
    method: str, features: np.ndarray, labels: np.ndarray, *, k: int = 10, grid: Sequence[float] | None = None
) -> tuple[float, float]:
    """(best value, its pairwise F) of ``method`` on a labelled set [N, D] / [N]."""
    candidates = tuple(grid) if grid is not None else BASELINE_GRIDS.get(method, ())
    if not candidates:
        raise ValueError(f"unknown baseline {method!r}; expected one of {sorted(BASELINE_GRIDS)}")
    scores = [pairwise(labels, baseline_labels(method, features, value, k=k))[2] for value in candidates]
    best = int(np.argmax(scores))
    return float(candidates[best]), float(scores[best])


def label_confidence(features: np.ndarray, labels: np.ndarray, *, k: int = 10) -> np.ndarray:
    """Per-sample confidence [N] in [0, 1]: mean cosine to its kNN that share its cluster (0 if none).

    The score a baseline can give without a learnt link model, so every method's pseudo-labels
    carry a comparable "how sure" column.
    """
    x = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels)
    if len(x) < 2:
        return np.zeros(len(x), np.float32)
    nbrs, sims = knn(x, min(k, len(x) - 1))
    same = (nbrs >= 0) & (labels[np.maximum(nbrs, 0)] == labels[:, None])
    count = same.sum(axis=1)
    total = np.where(same, np.clip(sims, 0.0, 1.0), 0.0).sum(axis=1)
    return np.divide(total, count, out=np.zeros(len(x)), where=count > 0).astype(np.float32)
