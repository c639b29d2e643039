"""Run a multi-task face model over a data stream and score every task it has labels for.

Two steps, kept apart so each is testable on its own: `predict` turns batches into arrays (the only
place that touches torch), and `score_predictions` turns arrays + labels into the flat metric dict and
the plot data (ROC curve, expression confusion matrix) that the `evaluate` stage writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from faceops.eval.groups import group_verification_metrics
from faceops.eval.tasks import (
    age_metrics,
    attribute_metrics,
    confusion_matrix,
    expression_metrics,
    gender_metrics,
    merge_metrics,
)
from faceops.eval.verification import cosine_scores, make_pairs, roc, verification_metrics
from faceops.labels import CELEBA_ATTRIBUTES

__all__ = ["Predictions", "predict", "score_predictions", "verification_pairs"]

RECOGNITION_KEY = "Recognition"


@dataclass(frozen=True)
class Predictions:
    """Model outputs for N samples.

    Attributes:
        keys: sample ids [N].
        embeddings: L2-normalised recognition embeddings [N, D] float32.
        outputs: every analysis head's raw output, name -> [N, k] float32.
        metas: the label dict of each sample [N] (shard ``json``).
    """

    keys: list[str]
    embeddings: np.ndarray
    outputs: dict[str, np.ndarray]
    metas: list[dict]


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    batches: Iterable[Mapping],
    *,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    progress: Callable[[int], None] | None = None,
) -> Predictions:
    """Forward every batch (``{"image": uint8 [B,3,H,W], "meta": [dict], "key": [str]}``) in eval mode.

    Args:
        model: returns a dict with ``"Recognition"`` [B, D] and analysis heads, or a tensor [B, D].
        batches: the loader.
        normalize: uint8 images -> model input (the training normalisation).
        device: where to run.
        autocast_dtype: e.g. ``torch.bfloat16`` on CUDA; ``None`` for full precision.
        progress: called with each batch's size (a progress bar's advance).
    """
    model.eval()
    device = torch.device(device)
    keys: list[str] = []
    metas: list[dict] = []
    embeddings: list[np.ndarray] = []
    outputs: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        images = normalize(batch["image"].to(device))
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = model(images)
        out = out if isinstance(out, Mapping) else {RECOGNITION_KEY: out}
        emb = torch.nn.functional.normalize(out[RECOGNITION_KEY].float(), dim=1)
        embeddings.append(emb.cpu().numpy())
        for name, value in out.items():
            if name != RECOGNITION_KEY:
                outputs.setdefault(name, []).append(value.float().cpu().numpy())
        keys += list(batch["key"])
        metas += list(batch["meta"])
        if progress is not None:
            progress(len(batch["key"]))
    if not keys:
        raise ValueError("no samples to evaluate: the data stream was empty")
    return Predictions(
        keys=keys,
        embeddings=np.concatenate(embeddings).astype(np.float32),
        outputs={name: np.concatenate(parts) for name, parts in outputs.items()},
        metas=metas,
    )


def verification_pairs(
    identities: Sequence[str], groups: Sequence[str | None], *, n_pairs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic pairs: within each group when groups are known (RFW builds pairs per group), else global.

    The number of pairs per group is capped by what the group allows, so small test sets still work.
    """
    names = sorted({g for g in groups if g is not None})
    if not names or any(g is None for g in groups):
        return _global_pairs(identities, n_pairs=n_pairs, seed=seed)
    parts = []
    for i, group in enumerate(names):
        members = np.flatnonzero(np.asarray([g == group for g in groups]))
        ids = [identities[j] for j in members]
        want = _feasible(ids, n_pairs // len(names))
        if want < 2:
            continue
        a, b, same = make_pairs(ids, n_pairs=want, seed=seed + i)
        parts.append((members[a], members[b], same))
    if not parts:
        return _global_pairs(identities, n_pairs=n_pairs, seed=seed)
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def _global_pairs(identities: Sequence[str], *, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs over all identities; empty arrays when the set allows no genuine+impostor pair."""
    want = _feasible(identities, n_pairs)
    if want < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, bool)
    return make_pairs(identities, n_pairs=want, seed=seed)


def _feasible(identities: Sequence[str], wanted: int) -> int:
    """The most pairs (<= wanted, even split genuine/impostor) that distinct sampling can give."""
    counts = np.unique(np.asarray(identities), return_counts=True)[1] if len(identities) else np.array([])
    genuine = int((counts * (counts - 1) // 2).sum())
    impostor = int((len(identities) ** 2 - (counts**2).sum()) // 2)
    return max(0, min(wanted, 2 * min(genuine, impostor)))


def _labels(metas: Sequence[Mapping], key: str) -> list:
    return [m.get(key) for m in metas]


def _verification(
    embeddings: np.ndarray, identities: list, groups: list, *, n_pairs: int, seed: int, folds: int
) -> tuple[dict, list[dict]] | None:
    """Verification (and per-group verification) metrics plus ROC rows; None when pairs are impossible."""
    labelled = np.asarray([i for i, ident in enumerate(identities) if ident is not None], np.int64)
    if len(labelled) < 4:
        return None
    a, b, same = verification_pairs([identities[i] for i in labelled], [groups[i] for i in labelled],
                                    n_pairs=n_pairs, seed=seed)  # fmt: skip
    if len(same) < 4:
        return None
    a, b = labelled[a], labelled[b]
    scores = cosine_scores(embeddings, a, b)
    metrics = verification_metrics(scores, same, folds=min(folds, len(scores) // 2))
    if any(g is not None for g in groups):
        metrics.update(group_verification_metrics(scores, same, a, b, groups, folds=min(folds, 5)))
    fpr, tpr, thr = roc(scores, same)
    rows = [{"fpr": float(f), "tpr": float(t), "threshold": float(h)}
            for f, t, h in zip(fpr, tpr, np.nan_to_num(thr, posinf=1.0), strict=True)]  # fmt: skip
    return metrics, rows


def score_predictions(pred: Predictions, *, n_pairs: int, seed: int, folds: int = 10) -> tuple[dict, dict]:
    """All metrics the labels allow, plus plot data.

    Verification needs at least 4 labelled samples and 4 feasible pairs (two identities, one with
    two images); with fewer, its keys are absent rather than made up.

    Returns:
        ``(metrics, plots)``: flat metrics (``verif/*``, ``expr/*``, ``age/*``, ``attr/*``, ``gender/*``,
        ``group/*``) and ``{"roc": [{fpr, tpr, threshold}], "confusion": [{actual, predicted}]}`` (a
        confusion row per labelled sample, in (actual, predicted) order).
    """
    metas = pred.metas
    identities = _labels(metas, "identity")
    groups = _labels(metas, "group")
    parts: list[dict] = []
    plots: dict[str, list] = {}
    verification = _verification(pred.embeddings, identities, groups, n_pairs=n_pairs, seed=seed, folds=folds)
    if verification is not None:
        metrics, plots["roc"] = verification
        parts.append(metrics)
    outputs = pred.outputs
    if "Expression" in outputs:
        expressions = _labels(metas, "expression")
        parts.append(expression_metrics(outputs["Expression"], expressions))
        matrix = confusion_matrix(outputs["Expression"], expressions)
        # one row per labelled sample: DVC's confusion template counts rows (a row per cell would show 1s)
        plots["confusion"] = [{"actual": int(i), "predicted": int(j)} for i in range(matrix.shape[0])
                              for j in range(matrix.shape[1]) for _ in range(int(matrix[i, j]))]  # fmt: skip
    if "Age" in outputs:
        parts.append(age_metrics(outputs["Age"], _labels(metas, "age")))
    if "Male" in outputs:
        parts.append(gender_metrics(outputs["Male"], _labels(metas, "Male")))
    attrs = [name for name in CELEBA_ATTRIBUTES if name in outputs]
    if attrs:
        scores_3d = np.stack([outputs[name] for name in attrs], axis=1)  # [N, A, 2]
        labels_2d = np.asarray([[m.get(name) for name in attrs] for m in metas], dtype=object)
        parts.append(attribute_metrics(scores_3d, labels_2d, names=attrs))
    return merge_metrics(*parts), plots
