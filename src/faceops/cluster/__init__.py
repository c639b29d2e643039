"""Face clustering: kNN graphs, linkage-GCN pseudo-labels, baselines and metrics.

Entry points:
- ``train_linkage_gcn(features, labels, ...) -> LinkageGCN`` on a labelled source;
- ``cluster(features, method=..., **params) -> labels [N]`` for every method (``METHODS``);
- ``pseudo_labels(features, model, ...) -> (labels [N], confidence [N])`` (``gcn_links`` + ``propagate`` +
  ``pseudo_label_confidence`` underneath);
- ``faceops.cluster.pseudo.pseudo_identities(known, target, cfg, ...)``: the ``cluster`` stage's work (GCN
  trained and its propagation chosen on a labelled set, the target clustered, the baselines scored);
- ``LinkageGCN.to_record()`` / ``LinkageGCN.from_record(record)`` to save and load a trained model;
- ``clustering_scores(gt, pred)`` for metrics JSON.
faiss is optional at import time: only the faiss kNN backends need it (``pip install faceops[cpu]``).

Method: the pseudo-labelling step of AIN, the Adversarial Information Network: Wang and Deng, "Adaptive
Face Recognition Using Adversarial Information Network", IEEE Transactions on Image Processing, vol. 31,
pp. 4909-4921, 2022 (arXiv 2305.13605). AIN adapts a face recogniser from a labelled source domain to an
unlabelled target; a graph convolutional network predicts linkage likelihoods between target faces to give
them pseudo-labels. AIN has no public code and only its abstract was available to us, so this package is a
reconstruction: the GCN is taken to be the linkage-based clustering of Wang et al., "Linkage Based Face
Clustering via Graph Convolution Network" (L-GCN), CVPR 2019 (arXiv 1903.11306), built as that paper's
released code (github.com/Zhongdao/gcn_clustering) and its re-implementation in learn-to-cluster
(github.com/yl-1993/learn-to-cluster, ``lgcn/``) do: kNN graph, instance pivot subgraphs, graph
convolutions, size-capped propagation, and the clustering metrics (where ours differ, the modules
say so: faceops.cluster.gcn, faceops.cluster.propagate). Ours as well: the choice of the
propagation's parameters on held-out labelled identities, the baselines, and the use of the pseudo-labels
as ordinary training shards, and the size cap on every method's clusters (``faceops.cluster.cap``). AIN's
other half, the adversarial mutual-information loss between the feature extractor and the target classifier,
is ``faceops.adapt``.
"""

from __future__ import annotations

import numpy as np

from faceops.cluster.baselines import agglomerative, hdbscan_labels, threshold_cc
from faceops.cluster.gcn import LinkageGCN, build_ips, predict_links, train_linkage_gcn
from faceops.cluster.knn import knn
from faceops.cluster.metrics import bcubed, clustering_scores, nmi, pairwise
from faceops.cluster.propagate import REDUCES, merge_duplicate_edges, propagate
from faceops.cluster.synthetic import make_identities

__all__ = [
    "METHODS", "REDUCES", "LinkageGCN", "agglomerative", "bcubed", "build_ips", "cluster", "cluster_gcn",
    "clustering_scores", "gcn_links", "hdbscan_labels", "knn", "make_identities", "merge_duplicate_edges", "nmi",
    "pairwise", "predict_links", "propagate", "pseudo_label_confidence", "pseudo_labels", "threshold_cc",
    "train_linkage_gcn",
]

METHODS = ("gcn", "threshold", "hdbscan", "agglomerative")


def gcn_links(
    features: np.ndarray, model: LinkageGCN, *, knn_graph: tuple[np.ndarray, np.ndarray] | None = None,
    batch_size: int = 512, reduce: str = "mean", **knn_kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Undirected scored edges [U, 2], [U] from the GCN, duplicate (i, j)/(j, i) scores merged by ``reduce``.

    ``knn_graph`` reuses a precomputed (neighbours [N, >= model.k1], similarities); otherwise ``knn``
    runs with ``knn_kwargs`` (index, nprobe, device, ...). ``reduce`` is ``"mean"`` or ``"max"``
    (``merge_duplicate_edges``; choose it on labelled calibration data).
    """
    nbrs = knn_graph[0] if knn_graph is not None else knn(features, model.k1, **knn_kwargs)[0]
    edges, scores = predict_links(model, features, nbrs, batch_size=batch_size)
    return merge_duplicate_edges(edges, scores, reduce=reduce)


def cluster_gcn(
    features: np.ndarray, *, model: LinkageGCN, max_size: int = 300, min_score: float = 0.5, step: float = 0.6,
    **link_kwargs,
) -> np.ndarray:
    """GCN edge scores -> size-capped propagation (``propagate``) -> labels [N]."""
    return pseudo_labels(features, model, max_size=max_size, min_score=min_score, step=step, **link_kwargs)[0]


def pseudo_labels(
    features: np.ndarray, model: LinkageGCN, *, max_size: int = 300, min_score: float = 0.5, step: float = 0.6,
    **link_kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-identities for unlabelled embeddings, with a per-sample confidence (the ``cluster`` stage).

    Args:
        features: [N, D] L2-normalised embeddings, in the space ``model`` was trained on.
        model: a trained ``LinkageGCN`` (``train_linkage_gcn`` or ``LinkageGCN.from_record``).
        max_size: largest pseudo-identity (``propagate``).
        min_score: GCN link probability an edge needs to be used at all.
        step: threshold rise when an oversize component is split.
        link_kwargs: passed to ``gcn_links`` (knn_graph, batch_size, reduce, or ``knn`` arguments).

    Returns:
        labels [N] int64 consecutive from 0, and confidence [N] float32 in [0, 1]
        (``pseudo_label_confidence``; 0 for singletons).
    """
    x = np.asarray(features, dtype=np.float32)
    edges, scores = gcn_links(x, model, **link_kwargs)
    labels = propagate(len(x), edges, scores, max_size=max_size, min_score=min_score, step=step)
    return labels, pseudo_label_confidence(labels, edges, scores)


def cluster(features: np.ndarray, method: str = "gcn", **params) -> np.ndarray:
    """Cluster L2-normalised embeddings [N, D] -> labels [N] int64.

    Args:
        features: [N, D] embeddings.
        method: ``"gcn"`` (needs ``model=``; see ``cluster_gcn``), ``"threshold"`` (``threshold_cc``),
            ``"hdbscan"`` (``hdbscan_labels``) or ``"agglomerative"`` (``agglomerative``).
        params: keyword arguments of the chosen function.
    """
    fns = {"gcn": cluster_gcn, "threshold": threshold_cc, "hdbscan": hdbscan_labels, "agglomerative": agglomerative}
    if method not in fns:
        raise ValueError(f"unknown clustering method {method!r}; expected one of {METHODS}")
    if method == "gcn" and "model" not in params:
        raise ValueError("method='gcn' needs model=<LinkageGCN from train_linkage_gcn>")
    return fns[method](np.asarray(features, dtype=np.float32), **params)


def pseudo_label_confidence(labels: np.ndarray, edges: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-sample confidence in its pseudo-label: mean score of its edges that stay inside its cluster.

    Samples with no such edge (singletons, or members joined only through others) get 0, so a
    consumer can threshold or weight pseudo-labels without another model.

    Args:
        labels: [N] cluster labels.
        edges: [E, 2] undirected edges (``gcn_links``).
        scores: [E] their scores.

    Returns:
        confidence [N] float32 in [0, 1] for probability scores.
    """
    labels = np.asarray(labels)
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    s = np.asarray(scores, dtype=np.float64).ravel()
    inside = labels[e[:, 0]] == labels[e[:, 1]]
    ends = e[inside].ravel()
    w = np.repeat(s[inside], 2)
    total = np.bincount(ends, weights=w, minlength=len(labels))
    count = np.bincount(ends, minlength=len(labels))
    return np.divide(total, count, out=np.zeros(len(labels)), where=count > 0).astype(np.float32)
