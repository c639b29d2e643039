"""Free parameters chosen on a labelled set (never on the set being clustered).

Why: a method with a hand-picked threshold is either secretly tuned on the evaluated data or
unfairly weak. Each baseline gets the supervision the linkage GCN gets: the labelled source, on
which the parameter with the best pairwise F is kept. The GCN's own free parameters (the edge
score it trusts, the cluster-size cap and split step of the propagation, and how an edge's two
directed scores merge) are chosen the same way, on labelled identities the GCN was not trained on
(``tune_propagation``, ``tune_gcn_links``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceops.cluster.baselines import agglomerative, hdbscan_labels, threshold_cc
from faceops.cluster.gcn import LinkageGCN, predict_links
from faceops.cluster.knn import knn
from faceops.cluster.metrics import pairwise
from faceops.cluster.propagate import REDUCES, merge_duplicate_edges, propagate

__all__ = ["BASELINE_GRIDS", "PROPAGATION_GRID", "PROPAGATION_STEPS", "baseline_labels", "label_confidence",
           "tune_baseline", "tune_gcn_links", "tune_propagation"]

#: Candidate values per baseline: cosine threshold, average-linkage cosine distance, HDBSCAN min size.
BASELINE_GRIDS: dict[str, tuple[float, ...]] = {
    "threshold": tuple(np.round(np.arange(0.15, 0.91, 0.05), 2)),
    "agglomerative": tuple(np.round(np.arange(0.1, 0.91, 0.05), 2)),
    "hdbscan": (2, 3, 4, 6, 8, 12, 16),
}

#: Candidate (min_score, max_size) pairs for the GCN's propagation (``propagate``).
PROPAGATION_GRID: tuple[tuple[float, int], ...] = tuple(
    (score, size) for score in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95) for size in (50, 100, 200, 300)
)
#: Candidate split steps (``propagate``'s threshold rise per round on an oversize component). A slow
#: rise (0.9) peels small groups off a chained component instead of shattering it: on bench/cluster.py's
#: calibration set it lifted the GCN's pairwise F from 0.616 (0.6 fixed) to 0.633 (0.672 with ``max``).
PROPAGATION_STEPS: tuple[float, ...] = (0.6, 0.8, 0.9)


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


def tune_propagation(
    edges: np.ndarray, scores: np.ndarray, labels: np.ndarray, *,
    grid: Sequence[tuple[float, int]] = PROPAGATION_GRID, steps: Sequence[float] = PROPAGATION_STEPS,
) -> tuple[tuple[float, int, float], float]:
    """(best (min_score, max_size, step), its pairwise F) of ``propagate`` on a labelled set's scored edges.

    Args:
        edges, scores: the set's GCN links (``gcn_links``) from a model that did not train on it.
        labels: [N] the set's true identities.
        grid: candidate (min_score, max_size) pairs, each tried with every split step in ``steps``;
            the first of equally good candidates wins (deterministic).
    """
    labels = np.asarray(labels)
    candidates = [(float(s), int(m), float(step)) for s, m in grid for step in steps]
    if not candidates:
        raise ValueError("tune_propagation needs at least one (min_score, max_size) candidate and one step")
    found = [pairwise(labels, propagate(len(labels), edges, scores, min_score=s, max_size=m, step=step))[2]
             for s, m, step in candidates]  # fmt: skip
    best = int(np.argmax(found))
    return candidates[best], float(found[best])


def tune_gcn_links(
    features: np.ndarray, labels: np.ndarray, model: LinkageGCN, *,
    grid: Sequence[tuple[float, int]] = PROPAGATION_GRID, steps: Sequence[float] = PROPAGATION_STEPS,
) -> tuple[dict[str, float | int | str], float]:
    """The GCN's free parameters chosen on a labelled set it did not train on, and their pairwise F.

    Beyond ``tune_propagation``'s: how the two directed scores of an edge merge (``REDUCES``: mean or
    max; the GCN runs once, both merges reuse its scores). Ties keep the earlier ``REDUCES`` entry.

    Returns:
        ``{"reduce", "min_score", "max_size", "step"}`` for ``pseudo_labels`` (``reduce`` goes to
        ``gcn_links``) and the pairwise F they reach on ``labels``.
    """
    x = np.asarray(features, dtype=np.float32)
    directed = predict_links(model, x, knn(x, model.k1)[0])
    best: tuple[dict[str, float | int | str], float] | None = None
    for reduce in REDUCES:
        (min_score, max_size, step), f = tune_propagation(*merge_duplicate_edges(*directed, reduce=reduce), labels,
                                                          grid=grid, steps=steps)  # fmt: skip
        if best is None or f > best[1]:
            best = {"reduce": reduce, "min_score": min_score, "max_size": max_size, "step": step}, f
    assert best is not None
    return best


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
