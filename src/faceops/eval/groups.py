"""Per-group fairness metrics (the RFW protocol): accuracy per group, their spread, and the SER.

For groups g with accuracies acc_g (errors err_g = 1 - acc_g):

- ``<prefix>/mean``: unweighted mean of acc_g (each group counts once, whatever its size);
- ``<prefix>/std``: *population* std of acc_g (divide by the number of groups, as RFW tables do:
  the groups are the whole population of interest, not a sample of groups);
- ``<prefix>/ser``: skewed error ratio max(err_g) / min(err_g). When the best group makes no error the
  ratio is ``inf`` (no finite epsilon would be honest: the value would only reflect the epsilon),
  and 1.0 when no group makes any error. JSON writers emit ``Infinity`` for it.

Group names become part of the keys (``group/<g>/acc``), so they must be non-empty and hold no ``/``.
A sample whose group is ``None`` is masked and counted in ``<prefix>/n_missing``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceops.eval.verification import kfold_accuracy

__all__ = ["group_metrics", "group_verification_metrics", "summarize_groups"]

Metrics = dict[str, float | int]


def _check_group_names(names: Sequence[str]) -> None:
    bad = [g for g in names if not isinstance(g, str) or not g or "/" in g]
    if bad:
        raise ValueError(f"group names must be non-empty strings without '/', got {bad[:5]}")


def summarize_groups(acc: dict[str, float], counts: dict[str, int], *, prefix: str = "group") -> Metrics:
    """Flat keys for per-group accuracies: per-group acc and n, mean, population std, SER.

    Args:
        acc: accuracy per group (groups without an accuracy are simply absent).
        counts: samples (or pairs) per group, reported for every group in it.
        prefix: first key component (``group`` by default).
    """
    metrics: Metrics = {}
    for g in sorted(counts):
        if g in acc:
            metrics[f"{prefix}/{g}/acc"] = float(acc[g])
        metrics[f"{prefix}/{g}/n"] = int(counts[g])
    if acc:
        values = np.array([acc[g] for g in sorted(acc)], dtype=np.float64)
        errors = 1.0 - values
        metrics[f"{prefix}/mean"] = float(values.mean())
        metrics[f"{prefix}/std"] = float(values.std())  # population std (ddof=0), see module docstring
        if errors.max() == 0.0:
            metrics[f"{prefix}/ser"] = 1.0
        elif errors.min() == 0.0:
            metrics[f"{prefix}/ser"] = float("inf")
        else:
            metrics[f"{prefix}/ser"] = float(errors.max() / errors.min())
    metrics[f"{prefix}/n_groups"] = len(acc)
    return metrics


def group_metrics(
    correct: np.ndarray | Sequence[float], groups: Sequence[str | None], *, prefix: str = "group"
) -> Metrics:
    """Per-group accuracy of per-sample results, plus mean, std and SER across groups.

    Args:
        correct: per-sample correctness [N]: booleans, or a per-sample score in [0, 1] (e.g. the
            fraction of a sample's attributes that are right) whose group mean is the accuracy.
        groups: group name per sample [N], ``None`` where unknown (masked).
        prefix: first key component.

    Returns:
        ``<prefix>/<g>/acc`` and ``<prefix>/<g>/n`` per group, ``<prefix>/mean``, ``<prefix>/std``,
        ``<prefix>/ser``, ``<prefix>/n_groups`` and ``<prefix>/n_missing``.
    """
    values = np.asarray(correct, dtype=np.float64)
    if values.ndim != 1 or len(values) != len(groups):
        raise ValueError(f"correct must be [N] matching groups [{len(groups)}], got shape {values.shape}")
    if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise ValueError("correct must hold booleans or per-sample scores in [0, 1]")
    known = np.array([g is not None for g in groups], dtype=bool)
    names = sorted({g for g in groups if g is not None})
    _check_group_names(names)
    labels = np.array([g if g is not None else "" for g in groups], dtype=object)
    acc: dict[str, float] = {}
    counts: dict[str, int] = {}
    for g in names:
        member = labels == g
        acc[g] = float(values[member].mean())
        counts[g] = int(member.sum())
    metrics = summarize_groups(acc, counts, prefix=prefix)
    metrics[f"{prefix}/n_missing"] = int((~known).sum())
    return metrics


def group_verification_metrics(
    scores: np.ndarray,
    same: np.ndarray,
    idx_a: np.ndarray,
    idx_b: np.ndarray,
    groups: Sequence[str | None],
    *,
    folds: int = 10,
    prefix: str = "group",
) -> Metrics:
    """Per-group k-fold verification accuracy (RFW): each group is its own verification set.

    A pair belongs to group g when both of its images do; its threshold folds are built from that
    group's pairs only (in their given order, contiguous folds as in `kfold_accuracy`). Pairs that
    cross groups, or touch an image without a group, are not scored and are counted in
    ``<prefix>/n_cross_pairs``. A group with fewer pairs than ``folds`` cannot be cross-validated:
    it keeps its ``n`` key, gets no accuracy and is counted in ``<prefix>/n_skipped``.

    Args:
        scores: similarity of each pair [P].
        same: whether each pair is genuine [P].
        idx_a, idx_b: image indices of each pair [P], into ``groups``.
        groups: group name per image [N], ``None`` where unknown.
        folds: folds per group (10 in RFW).
        prefix: first key component.
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    idx_a = np.asarray(idx_a, dtype=np.int64)
    idx_b = np.asarray(idx_b, dtype=np.int64)
    if not scores.shape == same.shape == idx_a.shape == idx_b.shape or scores.ndim != 1:
        raise ValueError(
            f"scores, same, idx_a, idx_b must be 1-D of equal length, got "
            f"{scores.shape}, {same.shape}, {idx_a.shape}, {idx_b.shape}"
        )
    labels = np.array([g if g is not None else "" for g in groups], dtype=object)
    for name, idx in (("idx_a", idx_a), ("idx_b", idx_b)):
        if idx.size and (idx.min() < 0 or idx.max() >= len(labels)):
            raise ValueError(f"{name} holds indices outside [0, {len(labels)})")
    group_a, group_b = labels[idx_a], labels[idx_b]
    within = (group_a == group_b) & (group_a != "")
    names = sorted(set(group_a[within].tolist()))
    _check_group_names(names)
    acc: dict[str, float] = {}
    counts: dict[str, int] = {}
    skipped = 0
    for g in names:
        member = within & (group_a == g)
        counts[g] = int(member.sum())
        if counts[g] < folds:
            skipped += 1
            continue
        acc[g], _, _ = kfold_accuracy(scores[member], same[member], folds=folds)
    metrics = summarize_groups(acc, counts, prefix=prefix)
    metrics[f"{prefix}/n_cross_pairs"] = int((~within).sum())
    metrics[f"{prefix}/n_skipped"] = skipped
    return metrics
