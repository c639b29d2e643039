"""OOD scores of a trained classifier: three from its logits, two from its embedding space.

Higher = more in-distribution for every score, so they plug into :func:`faceops.ood.metrics.auroc` and
:func:`faceops.ood.gscore.gscore` the same way.

* ``msp``: maximum softmax probability (Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
  Out-of-Distribution Examples in Neural Networks", ICLR 2017, arXiv 1610.02136).
* ``max_logit``: the largest logit (Hendrycks et al., "Scaling Out-of-Distribution Detection for
  Real-World Settings", ICML 2022, arXiv 1911.11132).
* ``energy``: T * logsumexp(logits / T), the negative free energy (Liu et al., "Energy-based
  Out-of-distribution Detection", NeurIPS 2020, arXiv 2010.03759).
* ``mahalanobis``: minus the smallest Mahalanobis distance to a class mean under one shared covariance
  fitted on in-distribution embeddings (Lee et al., "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018, arXiv 1807.03888); single layer, no
  input pre-processing. Our addition: a ridge of ``shrinkage`` times the mean variance, since face sets
  have fewer images per class than embedding dimensions.
* ``knn``: minus the cosine distance to the k-th nearest in-distribution embedding, both L2-normalised
  (Sun et al., "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022, arXiv 2204.06507).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, softmax

__all__ = ["LOGIT_SCORES", "FEATURE_SCORES", "OOD_SCORES", "ScoreInputs", "fit_score", "msp", "max_logit", "energy"]


def _logits(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"logits must be [N, C] with C >= 2 classes, got shape {x.shape}")
    return x


def msp(logits: np.ndarray) -> np.ndarray:
    """Maximum softmax probability [N] of logits [N, C]."""
    return softmax(_logits(logits), axis=1).max(axis=1)


def max_logit(logits: np.ndarray) -> np.ndarray:
    """Largest logit [N] of logits [N, C]."""
    return _logits(logits).max(axis=1)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy ``T * logsumexp(logits / T)`` [N] of logits [N, C]."""
    return temperature * logsumexp(_logits(logits) / temperature, axis=1)


@dataclass(frozen=True)
class ScoreInputs:
    """What a score reads of N images: head logits [N, C] and/or embeddings [N, D]."""

    logits: np.ndarray | None = None
    features: np.ndarray | None = None


def _normalised(features: np.ndarray | None) -> np.ndarray:
    if features is None or np.ndim(features) != 2:
        raise ValueError("this score reads embeddings: pass ScoreInputs(features=[N, D])")
    x = np.asarray(features, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _fit_knn(train: ScoreInputs, labels: Sequence | None, k: int, shrinkage: float) -> Callable:
    bank = _normalised(train.features)
    if bank.shape[0] < k:
        raise ValueError(f"knn score with k={k} needs >= {k} reference embeddings, got {bank.shape[0]}")

    def score(inputs: ScoreInputs) -> np.ndarray:
        x = _normalised(inputs.features)
        out = np.empty(x.shape[0])
        for start in range(0, x.shape[0], 1024):  # bounded memory: [1024, M] similarities at a time
            sims = x[start : start + 1024] @ bank.T
            out[start : start + 1024] = np.partition(sims, -k, axis=1)[:, -k]
        return out - 1.0  # = -(1 - cos) of the k-th neighbour

    return score


def _fit_mahalanobis(train: ScoreInputs, labels: Sequence | None, k: int, shrinkage: float) -> Callable:
    x = _normalised(train.features)
    if labels is None or len(labels) != x.shape[0]:
        raise ValueError("mahalanobis score needs one class label per reference embedding")
    classes = sorted(set(labels))
    index = np.array([classes.index(c) for c in labels])
    means = np.stack([x[index == c].mean(axis=0) for c in range(len(classes))])
    centred = x - means[index]
    cov = centred.T @ centred / x.shape[0]
    cov += shrinkage * max(float(np.trace(cov)) / cov.shape[0], 1e-12) * np.eye(cov.shape[0])
    precision = np.linalg.inv(cov)

    def score(inputs: ScoreInputs) -> np.ndarray:
        d = _normalised(inputs.features)[:, None, :] - means[None, :, :]  # [N, K, D]
        return -np.einsum("nkd,de,nke->nk", d, precision, d).min(axis=1)

    return score


LOGIT_SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"msp": msp, "max_logit": max_logit, "energy": energy}
FEATURE_SCORES = {"knn": _fit_knn, "mahalanobis": _fit_mahalanobis}
OOD_SCORES: tuple[str, ...] = (*LOGIT_SCORES, *FEATURE_SCORES)


def fit_score(
    name: str, train: ScoreInputs | None = None, labels: Sequence | None = None, *, k: int = 10,
    shrinkage: float = 0.1,
) -> Callable[[ScoreInputs], np.ndarray]:  # fmt: skip
    """A scoring function ``ScoreInputs -> [N]`` (higher = more in-distribution).

    Args:
        name: one of :data:`OOD_SCORES`.
        train: in-distribution embeddings the feature scores are fitted on (ignored by logit scores).
        labels: class of each ``train`` embedding (``mahalanobis`` only).
        k: neighbour rank of ``knn``.
        shrinkage: covariance ridge of ``mahalanobis``, in units of the mean variance.

    Raises:
        ValueError: unknown name, or what the score reads is missing.
    """
    if name in LOGIT_SCORES:
        fn = LOGIT_SCORES[name]

        def from_logits(inputs: ScoreInputs) -> np.ndarray:
            if inputs.logits is None:
                raise ValueError(f"score {name!r} reads logits: pass ScoreInputs(logits=[N, C])")
            return fn(inputs.logits)

        return from_logits
    if name not in FEATURE_SCORES:
        raise ValueError(f"unknown OOD score {name!r}; expected one of {list(OOD_SCORES)}")
    if train is None:
        raise ValueError(
            f"score {name!r} is fitted on in-distribution embeddings: pass train=ScoreInputs(features=...)"
        )
    return FEATURE_SCORES[name](train, labels, k, shrinkage)
