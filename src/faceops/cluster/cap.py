"""A size cap for any clustering: an oversize cluster is cut into the largest subtrees of its average-linkage tree
that fit.

Why: a pseudo-identity far larger than any identity of the labelled set is a merge of several people, and
training on it pulls them together. The linkage GCN's propagation has always capped its clusters
(``faceops.cluster.propagate``); the baselines (threshold components, HDBSCAN, average linkage) had no
cap, and under a domain shift they chain most of a target into one cluster: on bench/adapt.py's first seed
average linkage put 288 of 450 target faces (42 identities of about 10 photos) into one cluster (pairwise
precision 0.03), and AIN trained on it lost target accuracy.

How: the members of an oversize cluster get their own average-linkage tree (cosine distance), and the tree is
walked down from its root until a subtree holds at most ``max_size`` faces; each such subtree is a cluster. This
keeps the cluster's tight groups whole (on that seed: pairwise F 0.06 -> 0.29, 441 of 450 faces still in a
cluster of 2 or more) where raising a similarity threshold on the cluster's kNN edges, as the GCN's propagation
does, shattered it (F 0.16, 186 faces left in clusters). A cluster too large for a full distance matrix
(``max_n``) is split that way instead.
"""

from __future__ import annotations

import numpy as np

from faceops.cluster.baselines import average_linkage
from faceops.cluster.knn import knn
from faceops.cluster.propagate import propagate

__all__ = ["cap_clusters"]


def cap_clusters(
    features: np.ndarray, labels: np.ndarray, *, max_size: int, k: int = 10, max_n: int = 20_000
) -> tuple[np.ndarray, int]:
    """Split every cluster of ``labels`` larger than ``max_size``; clusters within the cap keep their members.

    Args:
        features: [N, D] L2-normalised embeddings the labels cluster.
        labels: [N] int cluster labels.
        max_size: the largest cluster allowed (>= 1).
        k: neighbours per face of the similarity graph a cluster larger than ``max_n`` is split along.
        max_n: the largest cluster split through its average-linkage tree (memory 4 n^2 bytes).

    Returns:
        (labels [N] int64 consecutive from 0 with no cluster above ``max_size``, number of clusters split).
    """
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    x = np.asarray(features, dtype=np.float32)
    labels = np.unique(np.asarray(labels), return_inverse=True)[1].ravel().astype(np.int64)
    sizes = np.bincount(labels)
    oversize = np.flatnonzero(sizes > max_size)
    out, fresh = labels.copy(), len(sizes)
    for cluster in oversize:
        members = np.flatnonzero(labels == cluster)
        split = _tree_pieces(x[members], max_size) if len(members) <= max_n else _knn_pieces(x[members], max_size, k)
        out[members] = fresh + split
        fresh += int(split.max()) + 1
    return np.unique(out, return_inverse=True)[1].ravel().astype(np.int64), len(oversize)


def _tree_pieces(x: np.ndarray, max_size: int) -> np.ndarray:
    """Labels [n] of the largest subtrees of ``x``'s average-linkage tree with at most ``max_size`` leaves."""
    n = len(x)
    tree = average_linkage(x, max_n=n)
    children = tree[:, :2].astype(np.int64)
    counts = np.concatenate([np.ones(n, np.int64), tree[:, 3].astype(np.int64)])
    pieces, stack, piece = np.empty(n, np.int64), [2 * n - 2], 0
    while stack:
        node = stack.pop()
        if counts[node] > max_size:
            stack.extend(children[node - n])
            continue
        below = [node]
        while below:  # every leaf under ``node`` joins this piece
            item = below.pop()
            if item < n:
                pieces[item] = piece
            else:
                below.extend(children[item - n])
        piece += 1
    return pieces


def _knn_pieces(x: np.ndarray, max_size: int, k: int) -> np.ndarray:
    """Labels [n] from ``x``'s kNN graph (cosine scores) cut by ``propagate``'s rising threshold to ``max_size``."""
    nbrs, sims = knn(x, min(k, len(x) - 1))
    edges = np.stack([np.repeat(np.arange(len(x)), nbrs.shape[1]), nbrs.ravel()], 1)
    valid = edges[:, 1] >= 0
    return propagate(len(x), edges[valid], sims.ravel()[valid], max_size=max_size, min_score=-1.0)
