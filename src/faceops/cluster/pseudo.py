"""Pseudo-identities for an unlabeled target from its embeddings (the ``cluster`` stage's work, AIN's recipe).

The linkage GCN learns "same identity?" on the kNN edges of a labelled embedding set (``known``), then
clusters ``target``. A share of ``known``'s identities (``calibration_share``, by name hash) is kept out
of GCN training to choose the propagation (edge-score merge, ``min_score``, ``max_size``, split step:
``select.tune_gcn_links``); without enough of them the params' values are used (mean merge,
``split_step``). Each baseline ``method`` chooses its free parameter on ``known`` as well. When the
target's true identities are known (the demo's held-out split), they only score the result, next to
the baselines'. With ``method: auto`` the method whose pairwise F on the calibration identities is
best clusters the target (:func:`choose_method`). No method's pseudo-identity exceeds :func:`size_cap`
(``faceops.cluster.cap`` splits the baselines' oversize clusters; the GCN's propagation caps its own).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from faceops.cluster import METHODS, clustering_scores, pseudo_labels, train_linkage_gcn
from faceops.cluster.cap import cap_clusters
from faceops.cluster.gcn import LinkageGCN
from faceops.cluster.select import PROPAGATION_GRID, baseline_labels, label_confidence, tune_baseline, tune_gcn_links
from faceops.config.cluster import ClusterParams
from faceops.data.split import identity_unit
from faceops.io.embeddings import EmbeddingSet

__all__ = [
    "CALIBRATION_SALT", "PseudoIdentities", "calibration_mask", "choose_method", "pseudo_identities", "size_cap",
]

CALIBRATION_SALT = "cluster-calibration"


@dataclass(frozen=True)
class PseudoIdentities:
    """What :func:`pseudo_identities` found.

    Attributes:
        model: the trained linkage GCN (``to_record`` for ``torch.save``).
        propagation: the propagation settings used (``reduce``, ``min_score``, ``max_size``, ``step``) and
            how they were chosen (``calibrated``, and on calibration: its pairwise F and sample count).
        rows: one ``{id, cluster, size, confidence}`` per target sample, in the target's order.
        kept: sample id -> ``{identity, pseudo_confidence}`` of the members of clusters with at least
            ``min_members`` faces: the relabelling of the target's shards.
        metrics: counts, propagation settings and, with known target identities, every method's scores.
    """

    model: LinkageGCN
    propagation: dict[str, Any]
    rows: list[dict[str, Any]]
    kept: dict[str, dict[str, Any]]
    metrics: dict[str, float | int]


def calibration_mask(identities: Sequence[str], share: float) -> np.ndarray | None:
    """Rows of the identities held out of GCN training to choose the propagation, or None when
    ``share`` is 0 or either side would have fewer than 2 identities (nothing to learn or to score)."""
    held = np.array([identity_unit(i, salt=CALIBRATION_SALT) < share for i in identities])
    sides = (set(np.asarray(identities)[held]), set(np.asarray(identities)[~held]))
    return held if share > 0 and min(len(side) for side in sides) >= 2 else None


def _fit_gcn(vectors: np.ndarray, labels: np.ndarray, held: np.ndarray | None, cfg: ClusterParams, seed: int,
             k1: int) -> tuple[LinkageGCN, dict[str, Any]]:  # fmt: skip
    """The linkage GCN (trained on the rows not ``held``) and its propagation settings: chosen on the
    ``held`` rows, or ``cfg``'s (mean merge, ``split_step``) when there are none."""
    gcn_args = {"k1": k1, "k2": min(cfg.k2, k1), "u": min(cfg.u, k1), "epochs": cfg.epochs, "seed": seed}
    if held is None:
        model = train_linkage_gcn(vectors, labels, **gcn_args)
        return model, {"reduce": "mean", "min_score": cfg.min_score, "max_size": cfg.max_size, "step": cfg.split_step,
                       "calibrated": 0}  # fmt: skip
    model = train_linkage_gcn(vectors[~held], labels[~held], **gcn_args)
    grid = [(score, size) for score, size in PROPAGATION_GRID if size <= cfg.max_size]
    grid = grid or [(cfg.min_score, cfg.max_size)]
    chosen, f = tune_gcn_links(vectors[held], labels[held], model, grid=grid)
    return model, {**chosen, "calibrated": 1, "calibration_pairwise_f": f, "calibration_samples": int(held.sum())}


def choose_method(requested: str, vectors: np.ndarray, labels: np.ndarray, gcn_f: float | None,
                  k: int) -> tuple[str, dict[str, float]]:  # fmt: skip
    """(method, every candidate's calibration pairwise F) for ``requested`` (``auto`` picks the best).

    ``vectors``/``labels`` are the calibration identities, which the GCN did not train on; ``gcn_f`` is its
    pairwise F there with the propagation tuned there (``tune_gcn_links``), and each baseline gets the
    same chance: its free parameter tuned on the same rows. Ties go to the method listed first in
    ``METHODS``. A fixed ``requested`` method is returned as is (no scores); ``auto`` without calibration
    rows (``gcn_f`` None) is the GCN.
    """
    if requested != "auto":
        return requested, {}
    if gcn_f is None:
        return "gcn", {}
    scores = {"gcn": float(gcn_f)}
    for method in METHODS[1:]:
        scores[method] = tune_baseline(method, vectors, labels, k=k)[1]
    return max(scores, key=lambda m: (scores[m], -METHODS.index(m))), scores


def size_cap(known_labels: np.ndarray, cfg: ClusterParams) -> int:
    """The largest pseudo-identity allowed: ``cfg.max_size``, and at most ``cfg.max_size_ratio`` times the
    face count of the labelled set's largest identity (``known_labels`` [N] int)."""
    if cfg.max_size_ratio is None or not len(known_labels):
        return cfg.max_size
    return min(cfg.max_size, max(2, math.ceil(cfg.max_size_ratio * int(np.bincount(known_labels).max()))))


def pseudo_identities(known: EmbeddingSet, target: EmbeddingSet, cfg: ClusterParams, *, seed: int,
                      name: str) -> PseudoIdentities:  # fmt: skip
    """Cluster ``target`` by ``cfg.method`` with everything learnt or chosen on ``known``.

    Args:
        known: a labelled embedding set (``cluster.train_on``).
        target: the set to give pseudo-identities (``cluster.target``; its identities, when present, only score).
        cfg: the ``cluster`` params section.
        seed: seeds torch and the GCN's training.
        name: prefix of the pseudo-identities, ``<name>_cNNNNNN`` (the target's source).

    Raises:
        ValueError: ``known`` has samples without an identity.
    """
    if any(identity is None for identity in known.identities):
        raise ValueError("the labelled set (cluster.train_on) has samples without an identity; the GCN (and the "
                         "baselines' parameter choice) need a labelled set")  # fmt: skip
    torch.manual_seed(seed)
    known_labels = np.unique(known.identities, return_inverse=True)[1]
    held = calibration_mask(known.identities, cfg.calibration_share)
    sides = [len(known.vectors), len(target.vectors)] + ([] if held is None else [held.sum(), (~held).sum()])
    k1 = min(cfg.k1, int(min(sides)) - 1)  # a tiny set has fewer neighbours
    model, propagation = _fit_gcn(known.vectors, known_labels, held, cfg, seed, k1)
    cap = size_cap(known_labels, cfg)
    split: dict[str, int] = {}

    def cluster_target(method: str) -> tuple[np.ndarray, np.ndarray]:
        """(labels, confidence) of the target by ``method``, its free parameters chosen on ``known``, no
        cluster above ``cap``."""
        if method == "gcn":
            return pseudo_labels(target.vectors, model, max_size=min(int(propagation["max_size"]), cap),
                                 min_score=float(propagation["min_score"]), step=float(propagation["step"]),
                                 reduce=str(propagation["reduce"]))  # fmt: skip
        value = tune_baseline(method, known.vectors, known_labels, k=k1)[0]
        found, split[method] = cap_clusters(target.vectors, baseline_labels(method, target.vectors, value, k=k1),
                                            max_size=cap, k=k1)  # fmt: skip
        return found, label_confidence(target.vectors, found, k=k1)

    calibration = held if held is not None else np.zeros(len(known_labels), bool)
    method, chosen_by = choose_method(cfg.method, known.vectors[calibration], known_labels[calibration],
                                      propagation.get("calibration_pairwise_f"), k=min(k1, int(calibration.sum()) - 1))
    labels, confidence = cluster_target(method)
    sizes = np.bincount(labels)
    rows = [{"id": i, "cluster": f"{name}_c{label:06d}", "size": int(sizes[label]), "confidence": round(float(c), 4)}
            for i, label, c in zip(target.ids, labels, confidence)]  # fmt: skip
    kept = {r["id"]: {"identity": r["cluster"], "pseudo_confidence": r["confidence"]}
            for r in rows if r["size"] >= cfg.min_members}  # fmt: skip
    metrics: dict[str, float | int] = {"samples": len(rows), "clusters": int((sizes > 0).sum()),
                                       "pseudo_samples": len(kept),
                                       "pseudo_identities": len({k["identity"] for k in kept.values()}),
                                       "size_cap": cap, "capped_clusters": split.get(method, 0),
                                       **{f"propagation/{k}": v for k, v in propagation.items() if k != "reduce"},
                                       "propagation/max_merge": int(propagation["reduce"] == "max"), "method": method,
                                       **{f"calibration/{m}/pairwise/f": f for m, f in chosen_by.items()}}  # fmt: skip
    if all(identity is not None for identity in target.identities):
        truth = np.unique(target.identities, return_inverse=True)[1]
        metrics.update({f"{method}/{k}": v for k, v in clustering_scores(truth, labels).items()})
        for other in [m for m in METHODS if m != method] if cfg.compare_baselines else []:
            found = cluster_target(other)[0]
            metrics.update({f"{other}/{k}": v for k, v in clustering_scores(truth, found).items()})
    return PseudoIdentities(model, propagation, rows, kept, metrics)
