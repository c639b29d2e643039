"""A one- or two-component Gaussian mixture on 1-D scores, chosen by BIC (what the mixture-based Gscores read).

Why a selection step: a two-component mixture fitted to a single population still splits it in two
(the likelihood always improves), and the split would read as separation. BIC (Schwarz 1978) charges the
three extra parameters ``3 ln N``; only when two populations explain the scores better than one is the
two-component fit kept. EM is deterministic: components start at the lower and upper quartiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Mixture", "fit_mixture"]

_VAR_FLOOR = 1e-6  # of the data variance: stops a component collapsing onto tied scores


@dataclass(frozen=True)
class Mixture:
    """The selected fit: one component (``weights == (1.0,)``) or two, the low-mean component first.

    Attributes:
        weights: mixing proportions, summing to 1.
        means: component means, ascending.
        stds: component standard deviations.
        bic: Bayesian information criterion of this fit (lower is better).
    """

    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    bic: float

    @property
    def components(self) -> int:
        return len(self.weights)

    def low_posterior(self, x: np.ndarray) -> np.ndarray:
        """P(low-mean component | x) per score [N]; zeros for a one-component fit."""
        x = np.asarray(x, dtype=np.float64)
        if self.components == 1:
            return np.zeros_like(x)
        log_p = _log_weighted(x, np.array(self.weights), np.array(self.means), np.array(self.stds))
        return np.exp(log_p[:, 0] - np.logaddexp(log_p[:, 0], log_p[:, 1]))


def _log_weighted(x: np.ndarray, w: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """log(w_k N(x | mu_k, sd_k)) [N, K]."""
    z = (x[:, None] - mu[None, :]) / sd[None, :]
    return np.log(w)[None, :] - 0.5 * z**2 - np.log(sd)[None, :] - 0.5 * np.log(2 * np.pi)


def _fit_two(x: np.ndarray, floor: float, iterations: int, tol: float) -> tuple[np.ndarray, ...]:
    """EM for two components from the quartiles; returns (weights, means, stds, log-likelihood)."""
    mu = np.quantile(x, [0.25, 0.75])
    sd = np.full(2, max(x.std() / 2.0, np.sqrt(floor)))
    w = np.full(2, 0.5)
    previous = -np.inf
    for _ in range(iterations):
        log_p = _log_weighted(x, w, mu, sd)
        total = np.logaddexp(log_p[:, 0], log_p[:, 1])
        likelihood = float(total.sum())
        resp = np.exp(log_p - total[:, None])  # [N, 2]
        mass = resp.sum(axis=0) + 1e-12
        w = mass / x.size
        mu = (resp * x[:, None]).sum(axis=0) / mass
        sd = np.sqrt(np.maximum((resp * (x[:, None] - mu) ** 2).sum(axis=0) / mass, floor))
        if likelihood - previous < tol * abs(likelihood):
            break
        previous = likelihood
    log_p = _log_weighted(x, w, mu, sd)
    order = np.argsort(mu)
    return w[order], mu[order], sd[order], float(np.logaddexp(log_p[:, 0], log_p[:, 1]).sum())


def fit_mixture(scores: np.ndarray, *, iterations: int = 500, tol: float = 1e-9) -> Mixture:
    """Fit one and two Gaussians to ``scores`` and keep the one with the lower BIC.

    Args:
        scores: 1-D finite scores [N], N >= 2.
        iterations, tol: EM stops after ``iterations`` or when the log-likelihood gains less than
            ``tol`` relative to its size.

    Raises:
        ValueError: fewer than 2 scores, or a non-finite one.
    """
    x = np.asarray(scores, dtype=np.float64).ravel()
    if x.size < 2 or not np.isfinite(x).all():
        raise ValueError(f"fit_mixture needs >= 2 finite scores, got {x.size} (finite: {bool(np.isfinite(x).all())})")
    n = x.size
    floor = _VAR_FLOOR * max(float(x.var()), 1e-12)
    sd1 = float(np.sqrt(max(x.var(), floor)))
    one_ll = float(_log_weighted(x, np.ones(1), np.array([x.mean()]), np.array([sd1])).sum())
    one = Mixture((1.0,), (float(x.mean()),), (sd1,), bic=2 * np.log(n) - 2 * one_ll)
    if n < 6 or np.ptp(x) == 0.0:  # too few scores to tell two populations apart
        return one
    w, mu, sd, two_ll = _fit_two(x, floor, iterations, tol)
    two = Mixture(tuple(map(float, w)), tuple(map(float, mu)), tuple(map(float, sd)), bic=5 * np.log(n) - 2 * two_ll)
    return two if two.bic < one.bic else one
