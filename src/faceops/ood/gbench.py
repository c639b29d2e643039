"""Gbench-mini: many generated incoming sets, each a mix of in-distribution and shifted images, to check Gscore.

Gscore's paper (Zhang, Deng, Zheng, arXiv 2302.08287) validates it on Gbench, a meta-benchmark of 200 OOD
sets: Gscore is computed per set without labels, the detector's true AUROC with them, and the two are
nearly linear. Our mini version (a reconstruction: Gbench's sets and protocol details are not public)
mixes in-distribution test scores with the scores of one shifted pool per set at a chosen OOD share; a
line fitted on a training part of the sets maps Gscore to AUROC, and RMSE, Pearson and Spearman are
measured on the held-out part (:func:`evaluate_gbench`).

The images (:func:`gbench_images`): ``known`` people (never of ``unseen_group``) are the in-distribution
classes; a quarter of their photos train the classifier, 15% are the in-distribution reference, 30% the
in-distribution part of every set and 30% the source of the corrupted pools. Shifted pools: other people
of the seen groups (``identities``), people of ``unseen_group`` (``group``), and each corruption of
:mod:`faceops.ood.shifts` at each of ``severities``, whose range was chosen so the sets' true AUROCs spread
from near 0.5 to 1 (a benchmark of only easy shifts cannot rank an estimator).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from faceops.ood.gscore import GSCORE_METHODS, gscore
from faceops.ood.metrics import auroc, fit_linear, meta_scores
from faceops.ood.shifts import CORRUPTIONS, FacePool, corrupt, sample_faces

__all__ = ["SEVERITIES", "Estimator", "GbenchImages", "IncomingSet", "evaluate_gbench", "gbench_images", "gscore_estimators",
           "mix_sets"]  # fmt: skip

SEVERITIES = (0.05, 0.1, 0.2, 0.4, 0.8)
#: A label-free estimator: (incoming set's scores [N], reference scores [M]) -> a number.
Estimator = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class GbenchImages:
    """The faces of one Gbench-mini instance (uint8 [N, S, S, 3] everywhere).

    Attributes:
        train: the classifier's training faces; ``train_labels`` [N] their class (0..known-1).
        reference: in-distribution reference faces (the Gscore reference set).
        in_distribution: the in-distribution part of every incoming set.
        shifted: pool name (``identities``, ``group``, ``blur@0.20`` ...) -> its faces.
    """

    train: np.ndarray
    train_labels: np.ndarray
    reference: np.ndarray
    in_distribution: np.ndarray
    shifted: dict[str, np.ndarray]


def gbench_images(
    *, seed: int, size: int = 32, identities: int = 60, photos: int = 80, known: int = 12, unseen_group: str = "g3",
    severities: Sequence[float] = SEVERITIES,
) -> GbenchImages:  # fmt: skip
    """Generate one Gbench-mini instance's faces (see the module docstring for the layout).

    Raises:
        ValueError: the generated people do not give ``known`` in-distribution classes and at least one other
            person of a seen group and of ``unseen_group`` (raise ``identities``).
    """
    pool = sample_faces(identities, photos, seed=seed, size=size)
    people = sorted(set(pool.identity.tolist()))
    group_of = {i: pool.group[pool.identity == i][0] for i in people}
    seen = [i for i in people if group_of[i] != unseen_group]
    if len(seen) <= known or not any(group_of[i] == unseen_group for i in people):
        raise ValueError(f"{identities} generated people give {len(seen)} outside {unseen_group!r} (need > {known}) "
                         f"and {len(people) - len(seen)} inside it (need >= 1); raise identities")  # fmt: skip
    cuts = np.round(np.array([0.25, 0.4, 0.7]) * photos).astype(int)
    is_known = np.isin(pool.identity, seen[:known])

    def part(lo: int, hi: int) -> FacePool:
        return pool.take(is_known & (pool.photo >= lo) & (pool.photo < hi))

    train, source = part(0, cuts[0]), part(cuts[2], photos)
    others = pool.photo < photos - cuts[2]  # as many photos per pool as the corrupted pools hold
    shifted = {"identities": pool.take(np.isin(pool.identity, seen[known:]) & others).images,
               "group": pool.take((pool.group == unseen_group) & others).images}  # fmt: skip
    for kind in CORRUPTIONS:
        for severity in severities:
            shifted[f"{kind}@{severity:.2f}"] = corrupt(source.images, kind, severity, seed=seed)
    labels = np.searchsorted(np.array(seen[:known]), train.identity)
    return GbenchImages(train.images, labels, part(cuts[0], cuts[1]).images, part(cuts[1], cuts[2]).images, shifted)


def gscore_estimators(tpr: float = 0.95) -> dict[str, Estimator]:
    """The three Gscore variants as estimators (method name -> function)."""
    return {method: (lambda x, ref, m=method: gscore(x, ref, m, tpr=tpr)) for method in GSCORE_METHODS}


@dataclass(frozen=True)
class IncomingSet:
    """One generated incoming set.

    Attributes:
        shift: the shifted pool's name (e.g. ``"blur@0.50"``).
        ood_share: share of shifted images in the set.
        scores: OOD scores of the set's images [N] (what Gscore sees).
        is_ood: which images are shifted [N]; only the true AUROC reads it.
    """

    shift: str
    ood_share: float
    scores: np.ndarray
    is_ood: np.ndarray

    def true_auroc(self) -> float:
        return auroc(self.scores[~self.is_ood], self.scores[self.is_ood])


def mix_sets(
    id_scores: np.ndarray, pools: Mapping[str, np.ndarray], *, shares: Sequence[float], size: int, seed: int
) -> list[IncomingSet]:
    """One set per (pool, share): ``round(share * size)`` pool scores plus in-distribution scores to ``size``.

    Both parts are drawn without replacement, each set from its own seeded generator.

    Raises:
        ValueError: a share outside (0, 1), or a pool or ``id_scores`` too small for the largest draw.
    """
    if not all(0.0 < s < 1.0 for s in shares):
        raise ValueError(f"shares must lie in (0, 1) so every set holds both kinds, got {list(shares)}")
    id_scores = np.asarray(id_scores, dtype=np.float64)
    sets = []
    for p, (name, pool) in enumerate(sorted(pools.items())):
        for s, share in enumerate(shares):
            n_ood = round(share * size)
            n_id = size - n_ood
            if len(pool) < n_ood or len(id_scores) < n_id:
                raise ValueError(f"set {name!r} at share {share} needs {n_ood} shifted and {n_id} in-distribution "
                                 f"scores, have {len(pool)} and {len(id_scores)}; lower size or add images")  # fmt: skip
            rng = np.random.default_rng([seed, p, s])
            scores = np.concatenate([rng.choice(id_scores, n_id, replace=False),
                                     rng.choice(np.asarray(pool, dtype=np.float64), n_ood, replace=False)])  # fmt: skip
            sets.append(IncomingSet(name, share, scores, np.arange(size) >= n_id))
    return sets


def evaluate_gbench(
    sets: Sequence[IncomingSet], reference_scores: np.ndarray, *, estimators: Mapping[str, Estimator],
    train_share: float = 0.5, seed: int = 0,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Fit AUROC ~ a * estimate + b on a random ``train_share`` of the sets; score each estimator on the rest.

    Args:
        sets: the incoming sets; reference_scores: in-distribution reference scores (no labels of the sets).
        estimators: name -> label-free estimator, e.g. :func:`gscore_estimators`.

    Returns:
        name -> ``rmse``, ``mae``, ``pearson``, ``spearman`` (held-out sets), ``slope``, ``intercept``,
        ``train_sets``, ``test_sets``; plus ``constant``, the baseline that predicts the training sets' mean.

    Raises:
        ValueError: fewer than 4 sets, or a split that leaves either part with fewer than 2 sets.
    """
    order = np.random.default_rng(seed).permutation(len(sets))
    n_train = round(train_share * len(sets))
    if len(sets) < 4 or not 2 <= n_train <= len(sets) - 2:
        raise ValueError(
            f"need >= 2 training and >= 2 held-out sets, got {len(sets)} sets at train_share {train_share}"
        )
    train, test = order[:n_train], order[n_train:]
    true = np.array([s.true_auroc() for s in sets])
    held = true[test] - true[train].mean()  # the baseline: predict the training sets' mean AUROC, rank nothing
    out = {"constant": {"rmse": float(np.sqrt(np.mean(held**2))), "mae": float(np.mean(np.abs(held))), "pearson": 0.0,
                        "spearman": 0.0, "slope": 0.0, "intercept": float(true[train].mean()),
                        "train_sets": len(train), "test_sets": len(test)}}  # fmt: skip
    for method, estimator in estimators.items():
        estimate = np.array([estimator(s.scores, reference_scores) for s in sets])
        line = fit_linear(estimate[train], true[train])
        scores = meta_scores(line.predict(estimate[test]), true[test], estimate[test])
        out[method] = {**scores, "slope": line.slope, "intercept": line.intercept, "train_sets": len(train),
                       "test_sets": len(test)}  # fmt: skip
    return out
