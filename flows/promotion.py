"""Model promotion: tag a version ``model@vN`` only when its evaluation beats the promoted model's.

Why plain annotated git tags: they travel with ``git push --tags``, show in ``git log --decorate`` and
``faceops history``, and ``faceops checkout model@v3`` restores that model. The tag message carries the
decision (both metric sets), so the reason stays with the tag. GTO would read such tags only with semver
versions (``model@v3.0.0``); promotion needs nothing beyond git.

The rule (:func:`decide_promotion`, pure) compares one params-chosen metric: the candidate is promoted
when no model is promoted yet, or when it is better by more than ``margin`` in the direction ``mode``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from faceops.config.ops import PromotionParams
from faceops.config.params import parse_params
from flows.gitrepo import VersionError, git_identity_env, head_commit, run_git, tags_by_commit
from flows.history import METRICS_FILE, read_metrics
from flows.runlog import in_prefect_run, run_logger

__all__ = ["MODEL_TAG", "PromotionDecision", "PromotionError", "decide_promotion", "param_from_promoted",
           "promote_if_better", "promoted_model", "train_from_promoted"]  # fmt: skip

log = logging.getLogger("faceops.promotion")

MODEL_TAG = re.compile(r"model@v(\d+)")
ARTIFACT_KEY = "faceops-promotion"


class PromotionError(ValueError):
    """Promotion cannot be decided (missing metric, uncommitted metrics, no version); the message says why."""


@dataclass(frozen=True)
class PromotionDecision:
    """What was decided and why, with both metric sets for the record."""

    promote: bool
    metric: str
    candidate_value: float
    promoted_value: float | None
    promoted_tag: str | None
    new_tag: str | None
    reason: str
    mode: str = "max"
    margin: float = 0.0
    candidate_metrics: Mapping[str, float] = field(default_factory=dict)
    promoted_metrics: Mapping[str, float] | None = None

    def summary(self) -> str:
        """One line for logs: the outcome and the reason."""
        outcome = f"promoted as {self.new_tag}" if self.promote else "not promoted"
        return f"candidate {outcome}: {self.reason}"

    def markdown(self) -> str:
        """The decision, the rule, and the candidate's and promoted model's metrics side by side."""
        promoted_name = self.promoted_tag or "promoted"
        lines = [
            f"# Model promotion: {'promoted as ' + str(self.new_tag) if self.promote else 'not promoted'}",
            "",
            self.reason,
            "",
            f"Rule: `{self.metric}`, mode `{self.mode}`, must beat the promoted model by more than {self.margin:g}.",
            "",
            f"| metric | candidate | {promoted_name} | difference |",
            "|---|---|---|---|",
        ]
        other = self.promoted_metrics or {}
        keys = [self.metric] + sorted((set(self.candidate_metrics) | set(other)) - {self.metric})
        for key in keys:
            new, old = self.candidate_metrics.get(key), other.get(key)
            diff = f"{new - old:+.6g}" if new is not None and old is not None else ""
            name = f"**{key}**" if key == self.metric else key
            lines.append(f"| {name} | {_fmt(new)} | {_fmt(old)} | {diff} |")
        return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _tag_number(tag: str | None) -> int:
    match = MODEL_TAG.fullmatch(tag or "")
    return int(match.group(1)) if match else 0


def decide_promotion(
    candidate: Mapping[str, float],
    promoted: Mapping[str, float] | None,
    cfg: PromotionParams,
    *,
    promoted_tag: str | None = None,
) -> PromotionDecision:
    """Decide whether ``candidate`` replaces the promoted model (pure: no git, no files).

    Args:
        candidate: metrics of the new model (flat ``{key: value}``).
        promoted: metrics of the promoted model; None when no model is promoted yet.
        cfg: metric, direction and margin (params.yaml ``ops.promotion``).
        promoted_tag: the promoted model's tag (``model@vN``); the new tag is ``model@v{N+1}``.

    Raises:
        PromotionError: ``cfg.metric`` is not among the candidate's metrics.
    """
    if cfg.metric not in candidate:
        raise PromotionError(
            f"promotion metric {cfg.metric!r} (params.yaml ops.promotion.metric) is not in the candidate's "
            f"metrics; available: {sorted(candidate)}. Set ops.promotion.metric to one of them"
        )
    value = float(candidate[cfg.metric])
    old = None if promoted is None or cfg.metric not in promoted else float(promoted[cfg.metric])
    common = {"metric": cfg.metric, "candidate_value": value, "promoted_value": old, "promoted_tag": promoted_tag,
              "mode": cfg.mode, "margin": cfg.margin, "candidate_metrics": dict(candidate),
              "promoted_metrics": None if promoted is None else dict(promoted)}  # fmt: skip
    new_tag = f"model@v{_tag_number(promoted_tag) + 1}"
    if not math.isfinite(value):
        return PromotionDecision(False, new_tag=None, reason=f"candidate {cfg.metric} is {value}", **common)
    if promoted is None:
        reason = f"no promoted model yet ({cfg.metric} {value:.6g})"
        return PromotionDecision(True, new_tag=new_tag, reason=reason, **common)
    if old is None or not math.isfinite(old):
        reason = (f"{promoted_tag or 'the promoted model'} has no usable {cfg.metric}; "
                  f"the candidate ({value:.6g}) is the first model measured on it")  # fmt: skip
        return PromotionDecision(True, new_tag=new_tag, reason=reason, **common)
    gain = value - old if cfg.mode == "max" else old - value
    promote = gain > cfg.margin
    verdict = "beats" if promote else "does not beat"
    reason = (
        f"{cfg.metric} {value:.6g} {verdict} {promoted_tag or 'the promoted model'}'s {old:.6g} by more than "
        f"{cfg.margin:g} ({'higher' if cfg.mode == 'max' else 'lower'} is better; gain {gain:+.6g})"
    )
    return PromotionDecision(promote, new_tag=new_tag if promote else None, reason=reason, **common)


def promoted_model(workspace: Path) -> tuple[str, str] | None:
    """``(tag, commit sha)`` of the highest ``model@vN`` tag, or None when nothing is promoted."""
    root = Path(workspace).resolve()
    tagged = [(_tag_number(tag), tag, sha) for sha, tags in tags_by_commit(root).items() for tag in tags]
    best = max((t for t in tagged if t[0] > 0), default=None)
    return None if best is None else (best[1], best[2])


def train_from_promoted(workspace: Path) -> str | None:
    """Point ``train.init`` in params.yaml at the newest ``model@vN`` tag; that tag, or None if none exists.

    The retrain flow calls this when ``ops.retrain.from_promoted`` is on, so a scheduled run fine-tunes the
    promoted model (:func:`param_from_promoted`).
    """
    return param_from_promoted(workspace, "train", "init")


def param_from_promoted(workspace: Path, section: str, key: str) -> str | None:
    """Set ``<section>.<key>`` in params.yaml to the newest ``model@vN`` tag; that tag, or None if none exists.

    Writing the tag into params (rather than resolving "the latest" inside the stage) keeps the run
    reproducible: DVC sees the params change, re-runs the stage and pins the tag in dvc.lock. Like a new
    source, the rewrite drops params.yaml's comments (PyYAML does not keep them); the file is written only
    when the value changes.

    Raises:
        ParamsError: params.yaml with the tag would not validate (it is left as it was).
    """
    root = Path(workspace).resolve()
    current = promoted_model(root)
    if current is None:
        return None
    path = root / "params.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if (raw.get(section) or {}).get(key) != current[0]:
        raw.setdefault(section, {})[key] = current[0]
        parse_params(raw, origin=str(path))
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return current[0]


def promote_if_better(workspace: Path, cfg: PromotionParams) -> PromotionDecision:
    """Compare HEAD's evaluation with the promoted model's and tag HEAD ``model@v{N+1}`` if it wins.

    The caller records a version first: the candidate is metrics/evaluate.json as committed at HEAD,
    so the tag pins exactly what was evaluated.

    Raises:
        PromotionError: no commit, no metrics at HEAD, uncommitted metrics, or the metric is missing.
    """
    root = Path(workspace).resolve()
    head = head_commit(root)
    if head is None:
        raise PromotionError(f"{root} has no commits: record a version before promoting")
    if run_git(root, "status", "--porcelain", "--", METRICS_FILE).strip():
        raise PromotionError(
            f"{METRICS_FILE} has uncommitted changes: record a version first so that the tag pins the "
            "evaluated model"
        )
    current = promoted_model(root)
    metrics = read_metrics(root, [head] + ([current[1]] if current else []))
    candidate = metrics[head]
    if candidate is None:
        raise PromotionError(f"no {METRICS_FILE} at HEAD ({head[:8]}): run the pipeline and record a version first")
    promoted = (metrics[current[1]] or {}) if current else None
    decision = decide_promotion(candidate, promoted, cfg, promoted_tag=current[0] if current else None)
    already = [t for t in tags_by_commit(root).get(head, []) if MODEL_TAG.fullmatch(t)]
    if already and decision.promote:
        decision = replace(decision, promote=False, new_tag=None, reason=f"HEAD is already promoted as {already[0]}")
    if decision.promote:
        message = decision.markdown().encode()
        try:
            run_git(root, "tag", "-a", "--cleanup=whitespace", "-F", "-", decision.new_tag, head,
                 stdin=message, env=git_identity_env(root))  # fmt: skip
        except VersionError as err:
            raise PromotionError(f"could not create tag {decision.new_tag}: {err}") from err
    _report(decision)
    return decision


def _report(decision: PromotionDecision) -> None:
    """One log line (Prefect's run logger inside a run) and, inside a run, a markdown artifact."""
    run_logger(log).info("%s", decision.summary())
    if in_prefect_run():
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(key=ARTIFACT_KEY, markdown=decision.markdown(), description=decision.summary())
