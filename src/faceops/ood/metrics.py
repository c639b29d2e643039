"""AUROC as the Mann-Whitney statistic, and the meta-evaluation figures of a label-free estimator.

Convention everywhere in ``faceops.ood``: a higher OOD score means "more in-distribution" (MSP, energy,
negative distances), so AUROC is the probability that a random in-distribution sample scores above a
random out-of-distribution one, ties counting one half. Computed from average ranks (O(N log N)), which
equals the pairwise count exactly, ties included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import pearsonr, rankdata, spearmanr

__all__ = ["auroc", "LinearFit", "fit_linear", "meta_scores"]


def auroc(id_scores: Sequence[float] | np.ndarray, ood_scores: Sequence[float] | np.ndarray) -> float:
    """P(score of an in-distribution sample > score of an OOD sample) + 0.5 P(tie).

    Args:
        id_scores: scores of in-distribution samples [N_id].
        ood_scores: scores of out-of-distribution samples [N_ood].

    Raises:
        ValueError: either set is empty or holds a non-finite score.
    """
    pos = np.asarray(id_scores, dtype=np.float64).ravel()
    neg = np.asarray(ood_scores, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"auroc needs both sets non-empty, got {pos.size} in-distribution and {neg.size} OOD scores")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("auroc got a non-finite score (nan or inf); check the scoring function's input")
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks: a tie contributes 1/2 to each side
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


@dataclass(frozen=True)
class LinearFit:
    """``y ~ slope * x + intercept`` (least squares)."""

    slope: float
    intercept: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(x, dtype=np.float64) + self.intercept


def fit_linear(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> LinearFit:
    """Least-squares line through ``(x, y)``; a constant ``x`` gives slope 0 and the mean of ``y``.

    Raises:
        ValueError: fewer than 2 points or lengths differ.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"fit_linear needs >= 2 paired values, got shapes {x.shape} and {y.shape}")
    if np.ptp(x) == 0.0:
        return LinearFit(0.0, float(y.mean()))
    slope, intercept = np.polyfit(x, y, 1)
    return LinearFit(float(slope), float(intercept))


def meta_scores(predicted: np.ndarray, true: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """How well a label-free estimate tracks the true AUROC on held-out sets.

    Args:
        predicted: the linear fit's AUROC prediction per set [S].
        true: the true AUROC per set [S].
        estimate: the raw label-free estimate per set [S] (rank correlations need no fit).

    Returns:
        ``rmse`` (of ``predicted`` vs ``true``), ``mae``, ``pearson`` and ``spearman`` (of ``estimate`` vs
        ``true``; 0 when either is constant, where a correlation is undefined).
    """
    predicted, true, estimate = (np.asarray(a, dtype=np.float64) for a in (predicted, true, estimate))
    constant = np.ptp(estimate) == 0.0 or np.ptp(true) == 0.0
    return {
        "rmse": float(np.sqrt(np.mean((predicted - true) ** 2))),
        "mae": float(np.mean(np.abs(predicted - true))),
        "pearson": 0.0 if constant else float(pearsonr(estimate, true).statistic),
        "spearman": 0.0 if constant else float(spearmanr(estimate, true).statistic),
    }
