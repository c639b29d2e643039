"""SwinFace's total loss: margin softmax on the embedding + one loss per analysis head, all weight 1.

SwinFace (arXiv:2308.11509) concatenates batches from several data sets and lets each loss read only
its own slice. Here the same idea is expressed with masks, so any mix of partially labelled samples
works: every head is averaged over the samples whose label is present, and a head with no labelled
sample contributes exactly 0 (value and gradient). A missing label is never read as a negative.

Batch contract: ``targets`` and ``masks`` are dicts keyed by *label* key (``faceops.models.tasks``:
``"identity"``, ``"age"``, ``"expression"``, the CelebA attribute names), each [B]; ``targets`` hold
int64 class ids (identity index, expression index, attribute 0/1) or float ages, ``masks`` hold bools
(True = label present). Values under a False mask are never read (any filler, even NaN, is fine). A
label key absent from ``targets`` means "missing for the whole batch".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceops.losses.age import annealed_age_loss
from faceops.losses.margin import MarginSoftmax
from faceops.models.tasks import ANALYSIS_HEADS, RECOGNITION, RECOGNITION_LABEL, HeadSpec

__all__ = ["SwinFaceLoss"]


def _masked_mean(per_sample: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over masked-in samples; 0 with a zero gradient when none is."""
    kept = torch.where(mask, per_sample, torch.zeros_like(per_sample))
    return kept.sum() / mask.sum().clamp(min=1)


class SwinFaceLoss(nn.Module):
    """Total SwinFace loss over the model's output dict and a masked batch of labels."""

    def __init__(
        self,
        margin: MarginSoftmax | None = None,
        heads: Sequence[HeadSpec] = ANALYSIS_HEADS,
        *,
        age_sigma: float = 3.0,
        weights: Mapping[str, float] | None = None,
    ):
        """
        Args:
            margin: the recognition margin head (owns the class centres); ``None`` = no recognition term.
            heads: the analysis heads to supervise (default: all 42).
            age_sigma: sigma of the annealed age loss.
            weights: per-output weight by output name (``"Recognition"``, ``"Age"``, ...); default 1.
        """
        super().__init__()
        self.margin = margin
        self.heads = tuple(heads)
        self.age_sigma = age_sigma
        names = {h.name for h in self.heads} | ({RECOGNITION} if margin is not None else set())
        if not names:
            raise ValueError("nothing to supervise: pass a margin head, at least one analysis head, or both")
        unknown = set(weights or {}) - names
        if unknown:
            raise ValueError(f"weights for unknown outputs {sorted(unknown)}; expected names from {sorted(names)}")
        self.weights = {name: float((weights or {}).get(name, 1.0)) for name in names}
        self._label_keys = {h.label for h in self.heads} | ({RECOGNITION_LABEL} if margin is not None else set())

    def _label(
        self, key: str, targets: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], like: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(target [B] or None, mask [B]) for one label key; absent key = all missing."""
        if key not in targets:
            return None, torch.zeros(like.shape[0], dtype=torch.bool, device=like.device)
        target, mask = targets[key], masks[key].to(device=like.device, dtype=torch.bool)
        if target.shape != (like.shape[0],) or mask.shape != (like.shape[0],):
            raise ValueError(
                f"label {key!r}: target {tuple(target.shape)} and mask {tuple(mask.shape)} must both be "
                f"[{like.shape[0]}] (one entry per sample of the batch)"
            )
        return target.to(like.device), mask

    def forward(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: Mapping[str, torch.Tensor],
        masks: Mapping[str, torch.Tensor],
        *,
        progress: float,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of per-output losses.

        Args:
            outputs: the model's dict (``"Recognition"`` [B, D] and one [B, k] per head).
            targets: label key -> [B] targets.
            masks: label key -> [B] bool, same keys as ``targets``.
            progress: training progress t / T in [0, 1] (anneals the age loss).

        Returns:
            ``(total, per_output)``: scalar total and the unweighted loss of every supervised output.

        Raises:
            ValueError: keys of ``targets`` and ``masks`` differ, a label key no output reads, a
                wrong shape, or a head missing from ``outputs``.
        """
        if set(targets) != set(masks):
            raise ValueError(f"targets keys {sorted(targets)} and masks keys {sorted(masks)} must match")
        extra = set(targets) - self._label_keys
        if extra:
            raise ValueError(
                f"labels {sorted(extra)} are read by no supervised output (supervised: {sorted(self._label_keys)}); "
                "drop them from the batch or add their heads"
            )
        missing = [n for n in self.weights if n not in outputs]
        if missing:
            raise ValueError(f"model outputs lack {missing}; got {sorted(outputs)}")

        losses: dict[str, torch.Tensor] = {}
        if self.margin is not None:
            embedding = outputs[RECOGNITION]
            identity, mask = self._label(RECOGNITION_LABEL, targets, masks, embedding)
            labels = torch.full_like(mask, -1, dtype=torch.long)
            if identity is not None:
                labels = torch.where(mask, identity.long(), labels)
            losses[RECOGNITION] = self.margin(embedding, labels)
        for head in self.heads:
            pred = outputs[head.name]
            target, mask = self._label(head.label, targets, masks, pred)
            if target is None:
                target = torch.zeros(pred.shape[0], device=pred.device)
            if head.kind == "regression":
                filled = torch.where(mask, target.float(), torch.zeros_like(target, dtype=torch.float))
                per_sample = annealed_age_loss(pred, filled, progress, sigma=self.age_sigma, reduction="none")
            else:
                filled = torch.where(mask, target.long(), torch.zeros_like(target, dtype=torch.long))
                per_sample = F.cross_entropy(pred.float(), filled, reduction="none")
            losses[head.name] = _masked_mean(per_sample, mask)
        total = sum(self.weights[name] * loss for name, loss in losses.items())
        return total, losses
