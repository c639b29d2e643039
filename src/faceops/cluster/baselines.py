"""Unsupervised baselines the linkage GCN has to beat, each ``features -> labels``.

- ``threshold_cc``: kNN graph, keep edges with cosine >= threshold, connected components. The
  cheapest sensible face clusterer; a single global threshold is its weakness.
- ``hdbscan_labels``: HDBSCAN on PCA-reduced features. Its maintainers advise reducing to tens of
  dimensions: above ~50 it falls back to a much slower generic algorithm (hdbscan#456, #444).
  Noise points become singletons.
- ``agglomerative``: average-linkage hierarchical clustering on cosine distance, cut at a distance
  threshold. Needs the full N(N-1)/2 distance vector (float64: 4 N^2 bytes), so it refuses large N.
"""

from __future__ import annotations

import numpy as np
import torch

from faceops.cluster.knn import knn
from faceops.cluster.propagate import components

__all__ = ["agglomerative", "average_linkage", "hdbscan_labels", "pca", "threshold_cc"]


def threshold_cc(
    features: np.ndarray,
    *,
    k: int = 10,
    threshold: float = 0.5,
    knn_graph: tuple[np.ndarray, np.ndarray] | None = None,
    **knn_kwargs,
) -> np.ndarray:
    """Connected components of the kNN graph restricted to edges with similarity >= threshold.

    Args:
        features: [N, D] L2-normalised embeddings.
        k: neighbours per node.
        threshold: cosine similarity an edge needs.
        knn_graph: precomputed (neighbours [N, >=k], similarities) to reuse; computed when None.
        knn_kwargs: passed to ``knn`` (index, nprobe, device, ...).

    Returns:
        labels [N] int64.
    """
    nbrs, sims = knn_graph if knn_graph is not None else knn(features, k, **knn_kwargs)
    nbrs, sims = nbrs[:, :k], sims[:, :k]
    keep = (sims >= threshold) & (nbrs >= 0)
    src = np.broadcast_to(np.arange(len(nbrs))[:, None], nbrs.shape)
    return components(len(nbrs), np.stack([src[keep], nbrs[keep]], 1))


def pca(features: np.ndarray, dim: int) -> np.ndarray:
    """Project [N, D] onto its top ``dim`` principal components -> [N, dim] float32.

    Done in torch through the D x D covariance: numpy's ``A @ A.T`` (its SYRK path) segfaults on large
    float matrices on this project's machines (e.g. float32 40,000 x 256; numpy/numpy#19685) and D x D
    is small.
    """
    x = torch.as_tensor(features, dtype=torch.float32)
    x = x - x.mean(0)
    _, vecs = torch.linalg.eigh(x.T @ x / len(x))
    return (x @ vecs[:, -dim:].flip(1)).numpy()


def hdbscan_labels(
    features: np.ndarray, *, pca_dim: int = 32, min_cluster_size: int = 2, min_samples: int | None = None,
    n_jobs: int = 1,
) -> np.ndarray:
    """HDBSCAN on PCA-reduced features; noise points are returned as singletons.

    Args:
        features: [N, D] embeddings.
        pca_dim: dimensions kept before HDBSCAN (<= D).
        min_cluster_size: smallest cluster HDBSCAN reports (2 keeps pairs, which faces often are).
        min_samples: density smoothing; None = min_cluster_size.
        n_jobs: cores for core-distance computation.

    Returns:
        labels [N] int64.
    """
    import hdbscan

    reduced = pca(features, min(pca_dim, features.shape[1]))
    lab = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                          core_dist_n_jobs=n_jobs).fit_predict(reduced.astype(np.float64))
    noise = lab < 0
    lab = lab.astype(np.int64)
    lab[noise] = lab.max(initial=-1) + 1 + np.arange(int(noise.sum()))
    return lab


def agglomerative(
    features: np.ndarray, *, distance_threshold: float = 0.5, max_n: int = 20_000, batch_size: int = 2048
) -> np.ndarray:
    """Average-linkage clustering on cosine distance, flat clusters cut at ``distance_threshold``.

    Args:
        features: [N, D] L2-normalised embeddings.
        distance_threshold: largest average cosine distance (1 - similarity) merged.
        max_n, batch_size: see ``average_linkage``.

    Returns:
        labels [N] int64.
    """
    from scipy.cluster.hierarchy import fcluster

    tree = average_linkage(features, max_n=max_n, batch_size=batch_size)
    return fcluster(tree, t=distance_threshold, criterion="distance").astype(np.int64) - 1


def average_linkage(features: np.ndarray, *, max_n: int = 20_000, batch_size: int = 2048) -> np.ndarray:
    """scipy's average-linkage tree [N - 1, 4] of L2-normalised embeddings [N, D] on cosine distance.

    Args:
        features: [N, D] L2-normalised embeddings (N >= 2).
        max_n: refuse larger inputs (memory is 4 N^2 bytes plus scipy's working copies).
        batch_size: rows per block when filling the distance vector.
    """
    from scipy.cluster.hierarchy import linkage

    n = len(features)
    if n > max_n:
        raise ValueError(
            f"agglomerative clustering needs the full distance matrix: N={n} > max_n={max_n} "
            f"(~{4 * n * n / 2**30:.1f} GiB); use method='threshold', 'hdbscan' or 'gcn', or raise max_n"
        )
    x = torch.as_tensor(features, dtype=torch.float32)
    cond = np.empty(n * (n - 1) // 2, np.float64)
    for s in range(0, n, batch_size):
        d = (1 - x[s : s + batch_size] @ x.T).clamp_min(0).numpy()
        for r in range(d.shape[0]):  # copy each row's upper triangle into scipy's condensed layout
            i = s + r
            start = i * n - i * (i + 1) // 2
            cond[start : start + n - i - 1] = d[r, i + 1 :]
    return linkage(cond, method="average")
