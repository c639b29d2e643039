"""1:1 face verification: pair sampling, cosine scores, k-fold accuracy, ROC/AUC and TAR@FAR.

Protocol (LFW / insightface style): a pair is declared "same identity" when its cosine score is
strictly above a threshold. The threshold is never chosen on the pairs it is scored on: pairs are cut
into ``folds`` *contiguous* blocks (as the LFW ``pairs.txt`` folds and insightface's unshuffled k-fold),
the threshold that maximises accuracy on the other ``folds - 1`` blocks is applied to the held-out
block, and the reported accuracy is the mean (and population std) of the per-block accuracies.
Contiguous blocks make the folds of a ``.bin`` set match the published ones; `make_pairs` interleaves
genuine and impostor pairs so that contiguous blocks of its output are balanced too.

Candidate thresholds are exact rather than a fixed grid: every midpoint between consecutive distinct
training scores, plus one below the lowest and one above the highest score. Ties in training accuracy
go to the lowest candidate, so results are deterministic.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "DEFAULT_FARS",
    "make_pairs",
    "cosine_scores",
    "kfold_accuracy",
    "roc",
    "auc",
    "tar_at_far",
    "far_key",
    "verification_metrics",
]

#: FARs reported by default (IJB-C style operating points that a small pair set can still support).
DEFAULT_FARS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)


def make_pairs(
    identities: Sequence[str], *, n_pairs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample distinct genuine and impostor pairs, half of each, deterministically.

    Genuine pairs pick an identity with at least two images uniformly, then two of its images;
    impostor pairs pick two different identities uniformly, then one image of each. Identities are
    drawn uniformly (not images) so that identities with many images do not dominate, as in LFW.
    No pair repeats, and each pair is stored with ``idx_a < idx_b``. The output alternates genuine
    and impostor pairs (genuine first), so any contiguous block of it is balanced to within one pair.

    Args:
        identities: identity of each image [N]; the pair indices point into this sequence.
        n_pairs: total number of pairs; ``n_pairs // 2`` impostor and the rest genuine.
        seed: seed of the sampler; the same inputs and seed give the same pairs.

    Returns:
        ``(idx_a [P], idx_b [P], same [P] bool)`` with ``P = n_pairs``.

    Raises:
        ValueError: ``n_pairs < 2`` or more pairs of a kind are asked for than exist.
    """
    if n_pairs < 2:
        raise ValueError(f"n_pairs must be >= 2 (one genuine, one impostor), got {n_pairs}")
    by_identity: dict[str, list[int]] = defaultdict(list)
    for i, ident in enumerate(identities):
        by_identity[ident].append(i)
    names = sorted(by_identity)
    members = [np.asarray(by_identity[n], dtype=np.int64) for n in names]
    n_impostor = n_pairs // 2
    n_genuine = n_pairs - n_impostor
    rng = np.random.default_rng(seed)
    genuine = _sample_genuine(members, n_genuine, rng)
    impostor = _sample_impostor(members, n_impostor, rng)
    pairs = np.empty((n_pairs, 2), dtype=np.int64)
    pairs[0::2] = genuine
    pairs[1::2] = impostor
    same = np.zeros(n_pairs, dtype=bool)
    same[0::2] = True
    return pairs[:, 0].copy(), pairs[:, 1].copy(), same


def _sample_genuine(members: list[np.ndarray], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct same-identity pairs [count, 2], sampled identity-first."""
    eligible = [m for m in members if len(m) >= 2]
    available = sum(len(m) * (len(m) - 1) // 2 for m in eligible)
    if count > available:
        raise ValueError(
            f"asked for {count} genuine pairs but the identities allow only {available} distinct ones; "
            "lower n_pairs or add images per identity"
        )
    if 2 * count > available:  # dense request: enumerate every pair and choose without replacement
        everything = np.array(
            [(m[i], m[j]) for m in eligible for i in range(len(m)) for j in range(i + 1, len(m))],
            dtype=np.int64,
        )
        return everything[rng.choice(len(everything), size=count, replace=False)]
    return _rejection_sample(count, lambda: _draw_genuine(eligible, rng))


def _sample_impostor(members: list[np.ndarray], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct different-identity pairs [count, 2], sampled identity-first."""
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    available = int((sizes.sum() ** 2 - (sizes**2).sum()) // 2)
    if count > available:
        raise ValueError(
            f"asked for {count} impostor pairs but {len(members)} identities allow only {available}; "
            "lower n_pairs or add identities"
        )
    if 2 * count > available:
        everything = np.array(
            [
                (a, b)
                for p in range(len(members))
                for q in range(p + 1, len(members))
                for a in members[p]
                for b in members[q]
            ],
            dtype=np.int64,
        )
        everything.sort(axis=1)
        return everything[rng.choice(len(everything), size=count, replace=False)]
    return _rejection_sample(count, lambda: _draw_impostor(members, rng))


def _draw_genuine(eligible: list[np.ndarray], rng: np.random.Generator) -> tuple[int, int]:
    m = eligible[rng.integers(len(eligible))]
    i, j = rng.choice(len(m), size=2, replace=False)
    return int(m[i]), int(m[j])


def _draw_impostor(members: list[np.ndarray], rng: np.random.Generator) -> tuple[int, int]:
    p, q = rng.choice(len(members), size=2, replace=False)
    return int(rng.choice(members[p])), int(rng.choice(members[q]))


def _rejection_sample(count: int, draw: Callable[[], tuple[int, int]]) -> np.ndarray:
    """Draw pairs until ``count`` distinct ones are found (at most half of all pairs: fast)."""
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int]] = []
    while len(out) < count:
        a, b = draw()
        key = (min(a, b), max(a, b))
        if key not in seen:
            seen.add(key)
            out.append(key)
    return np.array(out, dtype=np.int64).reshape(count, 2)


def cosine_scores(emb: np.ndarray, idx_a: np.ndarray, idx_b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair of embeddings.

    Args:
        emb: embeddings [N, D]; any scale (rows are L2-normalised here).
        idx_a: first image of each pair [P], indices into ``emb``.
        idx_b: second image of each pair [P].

    Returns:
        Scores [P] float64 in [-1, 1].

    Raises:
        ValueError: ``emb`` is not 2-D, an index is out of range, or a used row has zero norm
            (its direction, and so its cosine, is undefined).
    """
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2:
        raise ValueError(f"emb must be [N, D], got shape {emb.shape}")
    idx_a = np.asarray(idx_a, dtype=np.int64)
    idx_b = np.asarray(idx_b, dtype=np.int64)
    if idx_a.shape != idx_b.shape or idx_a.ndim != 1:
        raise ValueError(f"idx_a and idx_b must be 1-D of equal length, got {idx_a.shape} and {idx_b.shape}")
    for name, idx in (("idx_a", idx_a), ("idx_b", idx_b)):
        if idx.size and (idx.min() < 0 or idx.max() >= len(emb)):
            raise ValueError(f"{name} holds indices outside [0, {len(emb)}): min {idx.min()}, max {idx.max()}")
    norms = np.linalg.norm(emb, axis=1)
    used = np.union1d(idx_a, idx_b)
    zero = used[norms[used] == 0]
    if zero.size:
        raise ValueError(f"embeddings {zero[:5].tolist()} have zero norm; cosine is undefined for them")
    unit = emb / np.where(norms > 0, norms, 1.0)[:, None]
    return np.clip(np.einsum("pd,pd->p", unit[idx_a], unit[idx_b]), -1.0, 1.0)


def _check_scores(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same)
    if scores.ndim != 1 or scores.shape != same.shape:
        raise ValueError(f"scores and same must be 1-D of equal length, got {scores.shape} and {same.shape}")
    if same.dtype != bool:
        if not np.isin(same, (0, 1)).all():
            raise ValueError("same must hold booleans (or 0/1)")
        same = same.astype(bool)
    if not np.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinite values")
    return scores, same


def _best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The candidate threshold with the highest accuracy of ``score > t`` (lowest one on ties)."""
    values = np.unique(scores)  # sorted, distinct
    candidates = np.concatenate(([values[0] - 1.0], (values[:-1] + values[1:]) / 2, [values[-1] + 1.0]))
    # For t between values[k-1] and values[k], the predicted positives are the scores >= values[k].
    order = np.searchsorted(values, scores)  # rank of each score among the distinct values
    pos_per_value = np.bincount(order, weights=same.astype(np.float64), minlength=len(values))
    neg_per_value = np.bincount(order, weights=(~same).astype(np.float64), minlength=len(values))
    pos_above = np.concatenate((np.cumsum(pos_per_value[::-1])[::-1], [0.0]))
    neg_below = np.concatenate(([0.0], np.cumsum(neg_per_value)))
    correct = pos_above + neg_below  # [len(values) + 1], one per candidate
    return float(candidates[int(np.argmax(correct))])


def kfold_accuracy(
    scores: np.ndarray, same: np.ndarray, *, folds: int = 10
) -> tuple[float, float, np.ndarray]:
    """Verification accuracy with the threshold chosen on the other folds.

    Args:
        scores: similarity of each pair [P] (higher = more alike).
        same: whether each pair is genuine [P] bool.
        folds: number of contiguous folds (10 in the LFW protocol).

    Returns:
        ``(mean_acc, std_acc, thresholds [folds])``: mean and population std of the held-out fold
        accuracies, and the threshold each fold was scored with.

    Raises:
        ValueError: mismatched inputs, non-finite scores, or ``folds`` outside ``[2, P]``.
    """
    scores, same = _check_scores(scores, same)
    if not 2 <= folds <= len(scores):
        raise ValueError(f"folds must be in [2, number of pairs = {len(scores)}], got {folds}")
    blocks = np.array_split(np.arange(len(scores)), folds)
    accs = np.empty(folds)
    thresholds = np.empty(folds)
    for k, test in enumerate(blocks):
        train = np.ones(len(scores), dtype=bool)
        train[test] = False
        thresholds[k] = _best_threshold(scores[train], same[train])
        accs[k] = np.mean((scores[test] > thresholds[k]) == same[test])
    return float(accs.mean()), float(accs.std()), thresholds


def _require_both_classes(same: np.ndarray) -> None:
    if same.all() or not same.any():
        raise ValueError("ROC needs both genuine and impostor pairs; got only one kind")


def roc(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of ``score >= threshold`` as the genuine decision.

    Returns:
        ``(fpr [T], tpr [T], thresholds [T])`` as in :func:`sklearn.metrics.roc_curve`.
    """
    scores, same = _check_scores(scores, same)
    _require_both_classes(same)
    return roc_curve(same, scores)


def auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC curve (probability that a genuine pair outscores an impostor pair)."""
    scores, same = _check_scores(scores, same)
    _require_both_classes(same)
    return float(roc_auc_score(same, scores))


def tar_at_far(
    scores: np.ndarray, same: np.ndarray, fars: Sequence[float] = DEFAULT_FARS
) -> dict[float, float]:
    """True accept rate at each false accept rate the impostor set can resolve.

    For a target ``far``, at most ``k = floor(far * n_impostor)`` impostor pairs may be accepted: the
    threshold is the ``(k+1)``-th highest impostor score and pairs strictly above it are accepted
    (ties at the threshold are rejected, so the realised FAR never exceeds the target).
    A FAR below ``1 / n_impostor`` cannot be measured (``k`` would be 0 for every such target,
    giving the same number under different names), so such targets are **omitted** from the result.

    Args:
        scores: similarity of each pair [P].
        same: whether each pair is genuine [P].
        fars: target false accept rates in (0, 1].

    Returns:
        ``{far: tar}`` for the measurable targets, in the order given.
    """
    scores, same = _check_scores(scores, same)
    _require_both_classes(same)
    impostor = np.sort(scores[~same])[::-1]
    genuine = scores[same]
    out: dict[float, float] = {}
    for far in fars:
        if not 0.0 < far <= 1.0:
            raise ValueError(f"each FAR must be in (0, 1], got {far}")
        allowed = far * len(impostor) + 1e-9  # tolerance: 1e-4 * 10_000 must count as exactly 1
        if allowed < 1.0:
            continue
        k = int(np.floor(allowed))
        threshold = impostor[k] if k < len(impostor) else -np.inf
        out[float(far)] = float(np.mean(genuine > threshold))
    return out


def far_key(far: float) -> str:
    """Metric-key spelling of a FAR: ``1e-4`` -> ``"1e-4"``, ``0.05`` -> ``"5e-2"``."""
    return np.format_float_scientific(far, trim="-", exp_digits=1)


def verification_metrics(
    scores: np.ndarray, same: np.ndarray, *, folds: int = 10, fars: Sequence[float] = DEFAULT_FARS
) -> dict[str, float | int]:
    """All verification metrics under their flat keys (``verif/acc``, ``verif/tar@far=1e-4``, ...).

    Returns:
        ``verif/acc``, ``verif/acc_std``, ``verif/auc``, one ``verif/tar@far=<far>`` per measurable
        FAR, and the counts ``verif/n_pairs``, ``verif/n_genuine``, ``verif/n_impostor``.
    """
    scores, same = _check_scores(scores, same)
    mean_acc, std_acc, _ = kfold_accuracy(scores, same, folds=folds)
    metrics: dict[str, float | int] = {
        "verif/acc": mean_acc,
        "verif/acc_std": std_acc,
        "verif/auc": auc(scores, same),
    }
    for far, tar in tar_at_far(scores, same, fars).items():
        metrics[f"verif/tar@far={far_key(far)}"] = tar
    metrics["verif/n_pairs"] = int(len(scores))
    metrics["verif/n_genuine"] = int(same.sum())
    metrics["verif/n_impostor"] = int((~same).sum())
    return metrics
