"""Gscore: a label-free estimate of how well an OOD score separates in-distribution from OOD in an incoming set.

Paper: Yuhang Zhang, Weihong Deng, Liang Zheng, "Unsupervised Evaluation of Out-of-distribution
Detection: A Data-centric Perspective", arXiv 2302.08287, 2023 (journal version "Unsupervised evaluation
for out-of-distribution detection", Pattern Recognition, 2025). Only the abstract and highlights were
readable and no code is public: they say Gscore is computed without ID/OOD labels, that it is nearly
linear in the detector's AUROC over a benchmark of many OOD sets, and that there are three ways to compute
it. **The three computations below are our reconstructions**, consistent with that description but not
verified against the paper; they sit behind one function so the true definitions can replace them.

All three take only scores (higher = more in-distribution) of the unlabeled incoming set and, optionally,
the scores of in-distribution reference images (a validation split): never ID/OOD labels.

* ``mixture`` (mixture separability): a BIC-selected 1- or 2-Gaussian mixture of the incoming scores
  (:mod:`faceops.ood.mixture`); Gscore = Phi((mu_hi - mu_lo) / sqrt(sd_hi^2 + sd_lo^2)), the AUROC between
  the two fitted components; 0.5 when one component explains the scores better.
* ``pseudo_label`` (pseudo-label AUROC): incoming scores whose posterior of the low component exceeds 1/2
  are pseudo-OOD; Gscore = AUROC(pseudo-ID, pseudo-OOD), where pseudo-ID is the reference set when given,
  else the rest of the incoming set; 0.5 without a second component.
* ``threshold`` (threshold transfer): the threshold that keeps ``tpr`` of the reference scores (TPR 95%)
  moves to the incoming set; Gscore = the share of incoming scores below it. It needs reference scores
  and, unlike the other two, grows with the OOD share as well as with separability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from scipy.stats import norm

from faceops.ood.metrics import auroc
from faceops.ood.mixture import fit_mixture

__all__ = ["GSCORE_METHODS", "GscoreMethod", "gscore", "ood_share"]

GscoreMethod = Literal["mixture", "pseudo_label", "threshold"]
GSCORE_METHODS: tuple[str, ...] = ("mixture", "pseudo_label", "threshold")


def _checked(scores: Sequence[float] | np.ndarray, what: str, minimum: int) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64).ravel()
    if x.size < minimum or not np.isfinite(x).all():
        raise ValueError(f"{what} must hold >= {minimum} finite scores, got {x.size} "
                         f"({int((~np.isfinite(x)).sum())} non-finite)")  # fmt: skip
    return x


def _mixture(scores: np.ndarray, reference: np.ndarray | None, tpr: float) -> float:
    fit = fit_mixture(scores)
    if fit.components == 1:
        return 0.5
    gap = (fit.means[1] - fit.means[0]) / np.hypot(fit.stds[0], fit.stds[1])
    return float(norm.cdf(gap))


def _pseudo_label(scores: np.ndarray, reference: np.ndarray | None, tpr: float) -> float:
    fit = fit_mixture(scores)
    low = fit.low_posterior(scores) > 0.5
    pseudo_id = reference if reference is not None else scores[~low]
    if not low.any() or pseudo_id.size == 0:
        return 0.5
    return auroc(pseudo_id, scores[low])


def _threshold(scores: np.ndarray, reference: np.ndarray | None, tpr: float) -> float:
    if reference is None:
        raise ValueError("gscore method 'threshold' needs reference_scores (in-distribution validation scores)")
    return float(np.mean(scores < np.quantile(reference, 1.0 - tpr)))


_METHODS: dict[str, Callable[[np.ndarray, np.ndarray | None, float], float]] = {
    "mixture": _mixture, "pseudo_label": _pseudo_label, "threshold": _threshold,
}  # fmt: skip


def gscore(
    scores: Sequence[float] | np.ndarray,
    reference_scores: Sequence[float] | np.ndarray | None = None,
    method: GscoreMethod = "mixture",
    *,
    tpr: float = 0.95,
) -> float:
    """Label-free separability of an incoming set's OOD scores (our reconstruction; see the module docstring).

    Args:
        scores: OOD scores of the unlabeled incoming set [N] (higher = more in-distribution), N >= 2.
        reference_scores: scores of in-distribution reference images [M] (e.g. a validation split); used by
            ``pseudo_label`` (as pseudo-ID) and required by ``threshold``.
        method: ``"mixture"``, ``"pseudo_label"`` or ``"threshold"``.
        tpr: share of reference scores kept above the ``threshold`` method's cut.

    Returns:
        A float in [0, 1]; 0.5 (mixture, pseudo-label) means no evidence of a separate population.

    Raises:
        ValueError: unknown method, too few or non-finite scores, or ``threshold`` without a reference.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown gscore method {method!r}; expected one of {list(GSCORE_METHODS)}")
    if not 0.0 < tpr < 1.0:
        raise ValueError(f"tpr must be in (0, 1), got {tpr}")
    x = _checked(scores, "scores", 2)
    reference = None if reference_scores is None else _checked(reference_scores, "reference_scores", 1)
    return _METHODS[method](x, reference, tpr)


def ood_share(
    scores: Sequence[float] | np.ndarray, reference_scores: Sequence[float] | np.ndarray, *, tpr: float = 0.95
) -> float:
    """Estimated share of OOD images in an incoming set, from the reference threshold at ``tpr``.

    A share ``pi`` of OOD images all scoring below the cut and in-distribution images below it at the
    reference rate ``1 - tpr`` put ``b = (1 - pi)(1 - tpr) + pi`` of the set below it, so
    ``pi = (b - (1 - tpr)) / tpr``, clipped to [0, 1]. OOD images scoring above the cut are missed, so
    this is a lower estimate when the score separates poorly.
    """
    below = gscore(scores, reference_scores, "threshold", tpr=tpr)
    return float(np.clip((below - (1.0 - tpr)) / tpr, 0.0, 1.0))
