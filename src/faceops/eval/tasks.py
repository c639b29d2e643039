"""Metrics of the face-analysis heads: expression, gender, age and the 40 CelebA attributes.

Missing labels (``None`` or NaN, see faceops.labels) are masked: a masked sample is neither right nor
wrong and never counts as a negative. Every function reports how many labels it used (``<task>/n``)
and how many it masked (``<task>/n_missing``), so the counts cover every input. When *no* sample is
labelled, the value keys are left out (there is nothing to measure) and only the counts are returned,
rather than writing NaN into a metrics file.

Each accuracy comes with its trivial predictor's (``majority_acc``: the best constant prediction on the same
labels, i.e. the share of the commonest class) and the age MAE with the MAE of the best constant age (the
median of the labels, ``median_mae``): a head that does not beat these has learnt nothing usable. Both are
computed on the evaluated labels themselves, so they are the strongest constant baselines, not estimates.
Because a majority accuracy near 1 hides a head that never predicts the rare class, every accuracy also
comes as ``balanced_acc``: the mean recall over the classes present in the labels, which any constant
prediction scores at exactly 1 / (number of classes present), i.e. 0.5 for a binary label with both classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from faceops.labels import CELEBA_ATTRIBUTES, EXPRESSIONS

__all__ = [
    "DEFAULT_AGE_SIGMA",
    "label_mask",
    "balanced_accuracy",
    "confusion_matrix",
    "expression_metrics",
    "gender_metrics",
    "epsilon_error",
    "age_metrics",
    "attribute_metrics",
    "merge_metrics",
]

#: sigma (years) of the epsilon-error when a sample has no per-image sigma. LAP gives each image the
#: std of its apparent-age votes; without it we use 3, the sigma of SwinFace's age-loss surrogate.
#: An epsilon computed with this default is not comparable to published LAP numbers.
DEFAULT_AGE_SIGMA = 3.0

Metrics = dict[str, float | int]


def label_mask(labels: Sequence[object] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels as float64 with a mask of the present ones.

    Args:
        labels: values with ``None`` (or NaN) for a missing label, any shape.

    Returns:
        ``(values, present)``: values with NaN where missing, and the boolean mask, same shape.
    """
    values = np.asarray(labels, dtype=np.float64)  # None -> NaN
    return values, ~np.isnan(values)


def _predicted_classes(pred: np.ndarray, n: int, num_classes: int, what: str) -> np.ndarray:
    """Class indices [N] from indices [N] or per-class scores [N, C] (argmax)."""
    pred = np.asarray(pred)
    if pred.ndim == 2:
        if pred.shape[1] != num_classes:
            raise ValueError(f"{what} scores must be [N, {num_classes}], got {pred.shape}")
        pred = pred.argmax(axis=1)
    if pred.shape != (n,):
        raise ValueError(f"{what} predictions must be [{n}] indices or [{n}, {num_classes}] scores, got {pred.shape}")
    if not np.issubdtype(pred.dtype, np.integer) and not np.array_equal(pred, np.round(pred)):
        raise ValueError(f"{what} predictions must be integer class indices")
    return pred.astype(np.int64)


def _class_labels(labels: Sequence[object], num_classes: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer class labels [N] (0 where missing) and the present mask [N], range-checked."""
    values, present = label_mask(labels)
    if values.ndim != 1:
        raise ValueError(f"{what} labels must be 1-D, got shape {values.shape}")
    known = values[present]
    bad = known[(known != np.round(known)) | (known < 0) | (known >= num_classes)]
    if bad.size:
        raise ValueError(f"{what} labels must be integers in [0, {num_classes}) or None; found {bad[:5].tolist()}")
    return np.where(present, values, 0).astype(np.int64), present


def balanced_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over the classes present in ``truth`` of the share of that class predicted right (its recall).

    Args:
        pred: predicted class indices [N].
        truth: true class indices [N] (labelled samples only, N >= 1).

    Returns:
        In [0, 1]; a constant prediction scores exactly 1 / (number of distinct classes in ``truth``).
    """
    classes = np.unique(truth)
    return float(np.mean([np.mean(pred[truth == c] == c) for c in classes]))


def _accuracy(prefix: str, pred: np.ndarray, labels: Sequence[object], num_classes: int) -> Metrics:
    truth, present = _class_labels(labels, num_classes, prefix)
    classes = _predicted_classes(pred, len(truth), num_classes, prefix)
    metrics: Metrics = {}
    if present.any():
        metrics[f"{prefix}/acc"] = float(np.mean(classes[present] == truth[present]))
        counts = np.bincount(truth[present], minlength=num_classes)
        metrics[f"{prefix}/majority_acc"] = float(counts.max() / present.sum())
        metrics[f"{prefix}/balanced_acc"] = balanced_accuracy(classes[present], truth[present])
    metrics[f"{prefix}/n"] = int(present.sum())
    metrics[f"{prefix}/n_missing"] = int((~present).sum())
    return metrics


def confusion_matrix(pred: np.ndarray, labels: Sequence[object], num_classes: int = len(EXPRESSIONS)) -> np.ndarray:
    """Counts of (true class, predicted class) over the labelled samples.

    Args:
        pred: class indices [N] or scores [N, C].
        labels: true class or ``None`` per sample [N].
        num_classes: C (default: the expression classes of faceops.labels).

    Returns:
        [C, C] int64, rows = true class, columns = predicted class; sums to the labelled count.
    """
    truth, present = _class_labels(labels, num_classes, "confusion")
    classes = _predicted_classes(pred, len(truth), num_classes, "confusion")
    if (classes < 0).any() or (classes >= num_classes).any():
        raise ValueError(f"predicted classes must lie in [0, {num_classes})")
    flat = truth[present] * num_classes + classes[present]
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def expression_metrics(pred: np.ndarray, labels: Sequence[int | None]) -> Metrics:
    """``expr/acc`` over the labelled samples, with ``expr/majority_acc``, ``expr/balanced_acc``, ``expr/n`` and
    ``expr/n_missing``.

    Args:
        pred: expression indices [N] or scores [N, len(EXPRESSIONS)].
        labels: index into ``EXPRESSIONS`` or ``None`` per sample [N].
    """
    return _accuracy("expr", pred, labels, len(EXPRESSIONS))


def gender_metrics(pred: np.ndarray, labels: Sequence[int | None]) -> Metrics:
    """``gender/acc`` over the labelled samples, with ``gender/majority_acc``, ``gender/balanced_acc``, ``gender/n``
    and ``gender/n_missing``.

    Args:
        pred: 0/1 predictions [N] or two-class scores [N, 2], same coding as the labels
            (CelebA ``Male``: 1 = male).
        labels: 0, 1 or ``None`` per sample [N].
    """
    return _accuracy("gender", pred, labels, 2)


def epsilon_error(pred: np.ndarray, mu: np.ndarray, sigma: np.ndarray | float) -> float:
    """LAP epsilon-error ``1 - mean(exp(-(pred - mu)^2 / (2 sigma^2)))``.

    0 for a perfect estimate, tending to 1 as ``|pred - mu| / sigma`` grows; an error of one sigma
    costs ``1 - exp(-1/2) ~ 0.39``. Unlike MAE it forgives errors on images whose voters disagreed.

    Args:
        pred: predicted ages [N].
        mu: mean apparent age per image [N].
        sigma: std of the apparent-age votes per image [N] (or one value), > 0.
    """
    pred = np.asarray(pred, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), mu.shape)
    if pred.shape != mu.shape:
        raise ValueError(f"pred and mu must have the same shape, got {pred.shape} and {mu.shape}")
    if (sigma <= 0).any() or not np.isfinite(sigma).all():
        raise ValueError("sigma must be finite and > 0 for every sample")
    return float(1.0 - np.mean(np.exp(-((pred - mu) ** 2) / (2.0 * sigma**2))))


def age_metrics(
    pred: np.ndarray,
    age: Sequence[float | None],
    sigma: Sequence[float | None] | float | None = None,
    *,
    default_sigma: float = DEFAULT_AGE_SIGMA,
) -> Metrics:
    """``age/mae`` and ``age/eps`` over the samples with an age label.

    Args:
        pred: predicted ages [N] (or [N, 1], the shape of the age head).
        age: (mean apparent) age per sample or ``None`` [N].
        sigma: per-image std of the apparent-age votes ([N], ``None`` where unknown), one value for
            all, or ``None`` when no sample has one.
        default_sigma: used where sigma is unknown; see ``DEFAULT_AGE_SIGMA``.

    Returns:
        ``age/mae``, ``age/eps``, ``age/median_mae`` (the MAE of predicting the labels' median for all),
        ``age/n``, ``age/n_missing`` and ``age/n_default_sigma`` (how many labelled samples fell back to
        ``default_sigma``).
    """
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    mu, present = label_mask(age)
    if pred.shape != mu.shape or mu.ndim != 1:
        raise ValueError(f"pred must be [N] or [N, 1] matching age [N]; got {pred.shape} and {mu.shape}")
    if sigma is None:
        sigma = np.full(mu.shape, np.nan)
    sig, known_sigma = label_mask(np.broadcast_to(np.asarray(sigma, dtype=object), mu.shape))
    default_used = present & ~known_sigma
    sig = np.where(known_sigma, sig, default_sigma)
    metrics: Metrics = {}
    if present.any():
        metrics["age/mae"] = float(np.mean(np.abs(pred[present] - mu[present])))
        metrics["age/eps"] = epsilon_error(pred[present], mu[present], sig[present])
        metrics["age/median_mae"] = float(np.mean(np.abs(mu[present] - np.median(mu[present]))))
    metrics["age/n"] = int(present.sum())
    metrics["age/n_missing"] = int((~present).sum())
    metrics["age/n_default_sigma"] = int(default_used.sum())
    return metrics


def attribute_metrics(
    pred: np.ndarray,
    labels: Sequence[Sequence[int | None]] | np.ndarray,
    names: Sequence[str] = CELEBA_ATTRIBUTES,
) -> Metrics:
    """Per-attribute accuracy and their mean (CelebA protocol: mean over attributes, not samples).

    Each attribute is scored on its own labelled samples only; an attribute with no label at all is
    left out of the mean (``attr/n_attrs`` says how many entered it).

    Args:
        pred: 0/1 predictions [N, A] or two-class scores [N, A, 2].
        labels: 0, 1 or ``None`` [N, A], columns in the order of ``names``.
        names: attribute names [A] (default: the 40 CelebA attributes), used in the keys.

    Returns:
        ``attr/mean_acc``, ``attr/<name>/acc`` per scored attribute, the trivial predictors'
        ``attr/<name>/majority_acc`` and ``attr/mean_majority_acc``, ``attr/n_above_majority`` (attributes
        whose accuracy beats their majority class), ``attr/<name>/balanced_acc`` and their mean
        ``attr/mean_balanced_acc`` (a constant prediction scores 0.5 on an attribute with both classes),
        ``attr/n_attrs``, and the label counts ``attr/n`` (labelled cells) and ``attr/n_missing`` (masked cells).
    """
    truth, present = label_mask(labels)
    n_attrs = len(names)
    if truth.ndim != 2 or truth.shape[1] != n_attrs:
        raise ValueError(f"attribute labels must be [N, {n_attrs}], got shape {truth.shape}")
    known = truth[present]
    if not np.isin(known, (0.0, 1.0)).all():
        raise ValueError("attribute labels must be 0, 1 or None")
    pred = np.asarray(pred)
    if pred.ndim == 3 and pred.shape[2] == 2:
        pred = pred.argmax(axis=2)
    if pred.shape != truth.shape:
        raise ValueError(f"attribute predictions must be {truth.shape} or {truth.shape + (2,)}, got {pred.shape}")
    if not np.isin(pred, (0, 1)).all():
        raise ValueError("attribute predictions must be 0/1 (or two-class scores [N, A, 2])")
    correct = pred.astype(np.float64) == truth
    metrics: Metrics = {}
    accs, majorities, balanced = [], [], []
    for j, name in enumerate(names):
        if present[:, j].any():
            rows = present[:, j]
            acc = float(np.mean(correct[rows, j]))
            positive = float(np.mean(truth[rows, j]))
            metrics[f"attr/{name}/acc"] = acc
            metrics[f"attr/{name}/majority_acc"] = max(positive, 1.0 - positive)
            metrics[f"attr/{name}/balanced_acc"] = balanced_accuracy(pred[rows, j], truth[rows, j].astype(np.int64))
            accs.append(acc)
            majorities.append(max(positive, 1.0 - positive))
            balanced.append(metrics[f"attr/{name}/balanced_acc"])
    if accs:
        metrics["attr/mean_acc"] = float(np.mean(accs))
        metrics["attr/mean_majority_acc"] = float(np.mean(majorities))
        metrics["attr/mean_balanced_acc"] = float(np.mean(balanced))
    metrics["attr/n_above_majority"] = sum(a > m for a, m in zip(accs, majorities))
    metrics["attr/n_attrs"] = len(accs)
    metrics["attr/n"] = int(present.sum())
    metrics["attr/n_missing"] = int((~present).sum())
    return metrics


def merge_metrics(*parts: Mapping[str, float | int]) -> Metrics:
    """Assemble per-task metric dicts into one flat dict for a metrics file.

    Raises:
        ValueError: two parts define the same key (one would silently overwrite the other).
    """
    merged: Metrics = {}
    for part in parts:
        clash = sorted(merged.keys() & part.keys())
        if clash:
            raise ValueError(f"metric keys defined twice: {clash}")
        merged.update(part)
    return merged
