"""Clustering quality against ground-truth identities: pairwise, BCubed and NMI.

The three families answer different questions, which is why face-clustering papers report all three
(learn-to-cluster, L-GCN): pairwise P/R/F counts *pairs*, so large identities dominate it; BCubed
averages over *samples*, so every image counts once; NMI is an information measure that rewards many
pure clusters even when they are fragments. Everything is computed from the sparse contingency table
(one count per occupied (identity, cluster) cell), so cost is O(N log N) and memory O(N).

Conventions for empty denominators: with no predicted pair (all singletons) no pair can be wrong, so
pairwise precision is 1; with no true pair, recall is 1. F is 0 when P + R = 0.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

__all__ = ["bcubed", "clustering_scores", "nmi", "pairwise"]


def _contingency(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sparse contingency table of two labelings.

    Returns:
        counts [C] of the occupied (identity, cluster) cells, the identity index [C] and cluster
        index [C] of each cell, identity sizes [G] and cluster sizes [K].
    """
    gt = np.asarray(gt).ravel()
    pred = np.asarray(pred).ravel()
    if gt.shape != pred.shape:
        raise ValueError(f"labels differ in length: gt {gt.shape[0]}, pred {pred.shape[0]}; pass one label per sample")
    if gt.size == 0:
        raise ValueError("empty labelings; clustering metrics need at least one sample")
    _, g = np.unique(gt, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    n_pred = int(p.max()) + 1
    cells, counts = np.unique(g.astype(np.int64) * n_pred + p, return_counts=True)
    return counts, cells // n_pred, cells % n_pred, np.bincount(g), np.bincount(p)


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def pairwise(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Pairwise precision, recall and F over unordered sample pairs.

    Args:
        gt: [N] true identity per sample (any hashable dtype numpy can sort).
        pred: [N] predicted cluster per sample.

    Returns:
        (precision, recall, F): the fraction of predicted same-cluster pairs that share an identity,
        and the fraction of same-identity pairs that share a cluster.
    """
    counts, _, _, gt_sizes, pred_sizes = _contingency(gt, pred)
    c = counts.astype(np.float64)
    true_pos = float((c * (c - 1)).sum() / 2)
    pred_pairs = float((pred_sizes * (pred_sizes - 1.0)).sum() / 2)
    gt_pairs = float((gt_sizes * (gt_sizes - 1.0)).sum() / 2)
    p = true_pos / pred_pairs if pred_pairs > 0 else 1.0
    r = true_pos / gt_pairs if gt_pairs > 0 else 1.0
    return p, r, _f(p, r)


def bcubed(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """BCubed precision, recall and F (per-sample averages, Bagga & Baldwin 1998).

    For sample i with cluster C and identity L: precision_i = |C ∩ L| / |C|, recall_i = |C ∩ L| / |L|.
    A cell with n samples contributes n * n / |C| to the precision sum.

    Args:
        gt: [N] true identity per sample.
        pred: [N] predicted cluster per sample.

    Returns:
        (precision, recall, F).
    """
    counts, cg, cp, gt_sizes, pred_sizes = _contingency(gt, pred)
    c = counts.astype(np.float64)
    n = c.sum()
    p = float((c * c / pred_sizes[cp]).sum() / n)
    r = float((c * c / gt_sizes[cg]).sum() / n)
    return p, r, _f(p, r)


def nmi(gt: np.ndarray, pred: np.ndarray, *, drop_singletons: bool = False) -> float:
    """Normalised mutual information (arithmetic normalisation, as scikit-learn and learn-to-cluster).

    Args:
        gt: [N] true identity per sample.
        pred: [N] predicted cluster per sample.
        drop_singletons: score only the samples whose predicted cluster has >= 2 members: the
            quality of what was actually clustered, the view that matters for pseudo-labels, where
            singletons are discarded. Returns 0 when nothing is left.

    Returns:
        NMI in [0, 1].
    """
    gt = np.asarray(gt).ravel()
    pred = np.asarray(pred).ravel()
    if drop_singletons:
        _, inv, sizes = np.unique(pred, return_inverse=True, return_counts=True)
        keep = sizes[inv] >= 2
        if not keep.any():
            return 0.0
        gt, pred = gt[keep], pred[keep]
    return float(normalized_mutual_info_score(gt, pred))


def clustering_scores(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """All metrics as one flat dict (``pairwise/f``, ``bcubed/p``, ``nmi``, ...), for metrics JSON."""
    out: dict[str, float] = {}
    for name, fn in (("pairwise", pairwise), ("bcubed", bcubed)):
        p, r, f = fn(gt, pred)
        out.update({f"{name}/p": p, f"{name}/r": r, f"{name}/f": f})
    out["nmi"] = nmi(gt, pred)
    out["nmi_no_singletons"] = nmi(gt, pred, drop_singletons=True)
    pred = np.asarray(pred).ravel()
    _, sizes = np.unique(pred, return_counts=True)
    out["n_clusters"] = float(len(sizes))
    out["singleton_fraction"] = float((sizes == 1).sum() / pred.size)
    return out
