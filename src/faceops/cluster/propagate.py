"""Scored edges -> cluster labels: connected components under a cluster-size cap.

This is the pseudo-label propagation of CDP / L-GCN. Plain connected components chain identities
together through a few wrong edges; a cap on the cluster size catches the worst of these chains, and
each oversize component is re-split using only its stronger edges, with a threshold that rises
geometrically towards 1 (``th <- th + (1 - th) * step``) until every piece fits.

One difference from the original: it starts from all edges (no threshold) and relies on the cap alone,
so any under-cap chain of weak edges survives. Here edges below ``min_score`` are dropped first
(``min_score=0`` restores the original; 0.5 is a classifier's own decision boundary).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["REDUCES", "components", "merge_duplicate_edges", "propagate"]

#: How ``merge_duplicate_edges`` combines the scores of an edge seen from both of its ends.
REDUCES = ("mean", "max")


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label [n] of an undirected graph given as edges [E, 2]."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(e), np.int8), (e[:, 0], e[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def merge_duplicate_edges(
    edges: np.ndarray, scores: np.ndarray, *, reduce: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Treat (i, j) and (j, i) as one undirected edge scored by the mean or max of all its copies.

    Why a choice: a GCN scores (i, j) once from i's subgraph and once from j's (if each is in the
    other's kNN). The mean asks both views to agree; the max trusts the more confident one. Which is
    better depends on the model and data, so it is a free parameter chosen on labelled calibration
    data (``bench/cluster.py``: there max beat mean, calibration pairwise F 0.672 vs 0.633 at the best
    split step and threshold of each).

    Args:
        edges: [E, 2] int node ids; self-loops are dropped.
        scores: [E] float.
        reduce: one of ``REDUCES``: ``"mean"`` or ``"max"`` over the copies of an edge.

    Returns:
        unique edges [U, 2] with i < j, and their merged scores [U].
    """
    if reduce not in REDUCES:
        raise ValueError(f"unknown reduce {reduce!r}; expected one of {REDUCES}")
    e = np.sort(np.asarray(edges, dtype=np.int64).reshape(-1, 2), axis=1)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(e) != len(s):
        raise ValueError(f"{len(e)} edges but {len(s)} scores; pass one score per edge")
    keep = e[:, 0] != e[:, 1]
    e, s = e[keep], s[keep]
    uniq, inv = np.unique(e, axis=0, return_inverse=True)
    inv = inv.ravel()
    if reduce == "max":
        merged = np.full(len(uniq), -np.inf)
        np.maximum.at(merged, inv, s)
        return uniq, merged
    return uniq, (np.bincount(inv, weights=s, minlength=len(uniq)) / np.bincount(inv, minlength=len(uniq)))


def propagate(
    n: int,
    edges: np.ndarray,
    scores: np.ndarray,
    *,
    max_size: int = 300,
    min_score: float = 0.5,
    step: float = 0.6,
) -> np.ndarray:
    """Cluster labels from scored undirected edges, no cluster larger than ``max_size``.

    Args:
        n: number of nodes; nodes without a kept edge become singletons.
        edges: [E, 2] node ids (duplicates allowed; see ``merge_duplicate_edges`` to average them).
        scores: [E] edge scores, higher = more likely the same identity.
        max_size: largest allowed cluster.
        min_score: edges below this score are never used.
        step: fraction of the remaining gap to 1 by which the split threshold rises per round.

    Returns:
        labels [n] int64, consecutive from 0.
    """
    if max_size < 1 or not 0 < step < 1:
        raise ValueError(f"need max_size >= 1 and 0 < step < 1; got max_size={max_size}, step={step}")
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    s = np.asarray(scores, dtype=np.float64).ravel()
    keep = s >= min_score
    e, s = e[keep], s[keep]
    labels = components(n, e)
    th = float(s.min()) if len(s) else min_score
    while True:
        sizes = np.bincount(labels)
        big = sizes[labels] > max_size
        if not big.any():
            break
        # only edges inside oversize components take part in the next split
        inside = big[e[:, 0]] & big[e[:, 1]] & (labels[e[:, 0]] == labels[e[:, 1]])
        e, s = e[inside], s[inside]
        th = th + (1 - th) * step
        strong = s >= th
        if strong.all() and th > 1 - 1e-9:
            # every edge is (numerically) certain yet the component is still too big: cut it into
            # max_size chunks rather than loop forever, so the cap is a guarantee
            idx = np.flatnonzero(big)
            order = idx[np.argsort(labels[idx], kind="stable")]
            _, first = np.unique(labels[order], return_index=True)
            rank = np.arange(len(order)) - np.repeat(first, np.diff(np.append(first, len(order))))
            labels = labels.copy()
            labels[order] = labels.max() + 1 + labels[order] * (n // max_size + 1) + rank // max_size
            break
        e, s = e[strong], s[strong]
        sub = components(n, e)
        # nodes of oversize components get fresh ids from their sub-component; others keep theirs
        labels = np.where(big, labels.max() + 1 + sub, labels)
    return np.unique(labels, return_inverse=True)[1].ravel().astype(np.int64)
