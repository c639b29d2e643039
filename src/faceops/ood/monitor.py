"""Is the new data like the old? Gscore, estimated OOD share and a recommendation per source (stage ``monitor``).

Input: the monitored model's outputs grouped by role (:func:`faceops.ood.collect.gather_outputs`): ``fit``
and ``calibration`` (what the model trained on) and one group per source of incoming photos. One OOD score
(:mod:`faceops.ood.scores`) is fitted on ``fit``; every incoming set is scored, and its Gscore
(:mod:`faceops.ood.gscore`, our reconstruction of Zhang, Deng, Zheng, arXiv 2302.08287) and estimated OOD
share are computed against the calibration scores. The recommendation is ``retrain`` when a source brought
at least ``min_incoming`` photos, its Gscore reaches ``retrain_min_gscore`` (a separate population is
there) and its estimated OOD share reaches ``retrain_min_share``; else ``ok``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from faceops.eval.evaluate import Predictions
from faceops.ood.collect import CALIBRATION, FIT, SampleRoles, ShardOutputs, faces_by_key, gather_outputs
from faceops.ood.gscore import GSCORE_METHODS, gscore, ood_share
from faceops.ood.scores import ScoreInputs, fit_score

__all__ = ["MonitorRule", "SourceAssessment", "MonitorResult", "assess_incoming", "monitor_model", "monitor_metrics"]


@dataclass(frozen=True)
class MonitorRule:
    """How incoming sets are scored and judged (the ``monitor`` params section, unpacked)."""

    score: str = "knn"
    head: str = "Expression"
    k: int = 10
    gscore_method: str = "threshold"
    tpr: float = 0.95
    min_incoming: int = 20
    retrain_min_gscore: float = 0.3
    retrain_min_share: float = 0.2
    most_ood: int = 24
    bins: int = 20


@dataclass(frozen=True)
class SourceAssessment:
    """The verdict on one source's incoming photos.

    Attributes:
        source: the source name.
        incoming: photos scored.
        gscores: method -> Gscore (empty with fewer than 2 photos).
        gscore: the rule's method's Gscore (None with fewer than 2 photos).
        ood_share: estimated share of OOD photos (None with fewer than 2 photos).
        recommendation: ``"retrain"`` or ``"ok"``; reason: why, in a sentence.
        most_ood: sample ids of the lowest-scoring photos, most OOD first.
        histogram: rows ``{score, reference, incoming}``: the share of each set per score bin.
    """

    source: str
    incoming: int
    gscores: dict[str, float]
    gscore: float | None
    ood_share: float | None
    recommendation: str
    reason: str
    most_ood: list[str] = field(default_factory=list)
    histogram: list[dict[str, float]] = field(default_factory=list)


def _inputs(pred: Predictions, head: str) -> ScoreInputs:
    return ScoreInputs(logits=pred.outputs.get(head), features=pred.embeddings)


def _histogram(reference: np.ndarray, incoming: np.ndarray, bins: int) -> list[dict[str, float]]:
    edges = np.histogram_bin_edges(np.concatenate([reference, incoming]), bins=bins)
    ref, inc = (np.histogram(x, bins=edges)[0] / max(len(x), 1) for x in (reference, incoming))
    centres = (edges[:-1] + edges[1:]) / 2
    return [{"score": float(c), "reference": float(r), "incoming": float(i)} for c, r, i in zip(centres, ref, inc)]


def _verdict(n: int, value: float | None, share: float | None, rule: MonitorRule) -> tuple[str, str]:
    if n < rule.min_incoming or value is None or share is None:
        return "ok", f"{n} new photos: fewer than min_incoming ({rule.min_incoming}) to judge"
    shifted = value >= rule.retrain_min_gscore and share >= rule.retrain_min_share
    relation = "reach" if shifted else "do not both reach"
    reason = (f"Gscore {value:.3f} and estimated OOD share {share:.2f} {relation} retrain_min_gscore "
              f"{rule.retrain_min_gscore} and retrain_min_share {rule.retrain_min_share}")  # fmt: skip
    return ("retrain" if shifted else "ok"), reason


def assess_incoming(outputs: Mapping[str, Predictions], rule: MonitorRule) -> list[SourceAssessment]:
    """Score every incoming group of ``outputs`` against the reference roles.

    Raises:
        ValueError: no ``fit`` or ``calibration`` photos, or too few for the score (the message says which).
    """
    for role in (FIT, CALIBRATION):
        if role not in outputs:
            raise ValueError(f"monitoring needs reference photos in role {role!r} (the model's training photos, split "
                             "by identity); there are none: check the model's sources and monitor.calibration_share")  # fmt: skip
    fit = outputs[FIT]
    labels = [m.get("identity") or key for m, key in zip(fit.metas, fit.keys)]
    score = fit_score(rule.score, _inputs(fit, rule.head), labels, k=min(rule.k, len(fit.keys)))
    reference = score(_inputs(outputs[CALIBRATION], rule.head))
    verdicts = []
    for source in sorted(set(outputs) - {FIT, CALIBRATION}):
        pred = outputs[source]
        values = score(_inputs(pred, rule.head))
        gscores = {m: gscore(values, reference, m, tpr=rule.tpr) for m in GSCORE_METHODS} if len(values) >= 2 else {}
        share = ood_share(values, reference, tpr=rule.tpr) if len(values) >= 2 else None
        headline = gscores.get(rule.gscore_method)
        recommendation, reason = _verdict(len(values), headline, share, rule)
        order = np.argsort(values, kind="stable")[: rule.most_ood]
        verdicts.append(SourceAssessment(source, len(values), gscores, headline, share, recommendation, reason,
                                         [pred.keys[i] for i in order], _histogram(reference, values, rule.bins)))  # fmt: skip
    return verdicts


def monitor_metrics(verdicts: Sequence[SourceAssessment], *, fit: int, calibration: int) -> dict[str, float | int]:
    """Flat metrics: ``<source>/incoming``, ``/gscore``, ``/gscore_<method>``, ``/ood_share``, ``/retrain``, and
    ``retrain`` (1 when any source says so) plus the reference sizes."""
    metrics: dict[str, float | int] = {"reference/fit": fit, "reference/calibration": calibration}
    for v in verdicts:
        metrics[f"{v.source}/incoming"] = v.incoming
        metrics[f"{v.source}/retrain"] = int(v.recommendation == "retrain")
        if v.gscore is not None:
            metrics[f"{v.source}/gscore"] = v.gscore
            metrics[f"{v.source}/ood_share"] = v.ood_share
            metrics.update({f"{v.source}/gscore_{m}": value for m, value in v.gscores.items()})
    metrics["retrain"] = int(any(v.recommendation == "retrain" for v in verdicts))
    return metrics


@dataclass(frozen=True)
class MonitorResult:
    """What :func:`monitor_model` found: the verdicts, their flat metrics, each source's most-OOD faces."""

    verdicts: list[SourceAssessment]
    metrics: dict[str, float | int]
    faces: dict[str, list[np.ndarray]]


def monitor_model(
    model: torch.nn.Module, shards: Mapping[str, Mapping[str, Sequence[Path]]], roles: SampleRoles, rule: MonitorRule,
    *, batch_size: int = 64, device: str = "cpu", kept: ShardOutputs | None = None,
) -> MonitorResult:  # fmt: skip
    """The ``monitor`` stage's work: outputs of every sample with a role, verdicts, most-OOD faces.

    Args:
        model: the monitored model (eval mode, on ``device``).
        shards: source -> split -> shard files (every split of every source).
        roles: which samples are reference and which incoming (:class:`faceops.ood.collect.SampleRoles`).
        rule: score, Gscore variant and thresholds.
        kept: this model's whole-shard outputs from earlier runs (:class:`faceops.ood.collect.ShardOutputs`).
    """
    outputs = gather_outputs(model, shards, roles, batch_size=batch_size, device=device, kept=kept)
    verdicts = assess_incoming(outputs, rule)
    faces = {v.source: faces_by_key([u for urls in shards[v.source].values() for u in urls], v.most_ood,
                                    batch_size=batch_size) for v in verdicts}  # fmt: skip
    metrics = monitor_metrics(verdicts, fit=len(outputs[FIT].keys), calibration=len(outputs[CALIBRATION].keys))
    return MonitorResult(verdicts, metrics, faces)
