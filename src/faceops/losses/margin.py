"""Additive-margin softmax for face recognition: CosFace, ArcFace and their combination, with Partial FC.

CosFace (Wang et al., arXiv:1801.09414) subtracts ``m_cos`` from the target cosine, ArcFace (Deng et al.,
arXiv:1801.07698) adds ``m_arc`` to the target angle; insightface's combined margin does both:
target logit ``s * (cos(theta + m_arc) - m_cos)``, other logits ``s * cos(theta)``. Partial FC (An et al.,
arXiv:2203.15565) trains each step against a random subset of class centres (every positive kept) so
the softmax stays affordable for very many identities. SwinFace uses CosFace s=64, m=0.4 (the defaults).

Tensor contract: embeddings [B, D] and centres [C, D] are L2-normalised here (inputs need not be);
``cos`` is [B, C] in [-1, 1]; labels are int64 [B] with ``-1`` = ignore (no margin, no loss). Nothing
is edited in place, and the margin is applied with its true gradient (no ``no_grad`` shortcut).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["margin_logits", "MarginSoftmax"]


def _penalise(cos: torch.Tensor, m_arc: float, m_cos: float) -> torch.Tensor:
    """Target cosines [N] -> cos(theta + m_arc) - m_cos, kept monotone in theta."""
    if m_arc:
        sin = torch.sqrt(torch.clamp(1.0 - cos * cos, min=1e-6))
        shifted = cos * math.cos(m_arc) - sin * math.sin(m_arc)
        # Past theta = pi - m_arc, cos(theta + m) would rise again and reward a worse angle; like
        # insightface's ArcFace we fall back there to the linear penalty cos(theta) - m * sin(m).
        cos = torch.where(cos > math.cos(math.pi - m_arc), shifted, cos - m_arc * math.sin(m_arc))
    return cos - m_cos


def margin_logits(
    cos: torch.Tensor, labels: torch.Tensor, *, s: float, m_arc: float = 0.0, m_cos: float = 0.0
) -> torch.Tensor:
    """Scaled logits with the combined margin on each row's target class.

    Args:
        cos: cosine similarities [B, C].
        labels: target class per row [B] (int64); ``-1`` rows get no margin.
        s: scale (SwinFace / insightface: 64).
        m_arc: additive angular margin (ArcFace 0.5; 0 = off).
        m_cos: additive cosine margin (CosFace 0.4; 0 = off).

    Returns:
        Logits [B, C]: ``s * cos`` everywhere except ``s * (cos(theta + m_arc) - m_cos)`` at targets.
    """
    valid = labels >= 0
    index = labels.clamp(min=0).unsqueeze(1)  # [B, 1]
    target = cos.gather(1, index).squeeze(1)  # [B]
    target = torch.where(valid, _penalise(target, m_arc, m_cos), target)
    return s * cos.scatter(1, index, target.unsqueeze(1))


class MarginSoftmax(nn.Module):
    """Class centres + combined-margin softmax cross-entropy, optionally Partial FC.

    The loss is averaged over rows whose label is not ``-1``; a batch without any labelled row gives
    exactly 0 (still attached to the graph, so every parameter receives a zero gradient).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        *,
        s: float = 64.0,
        m_arc: float = 0.0,
        m_cos: float = 0.4,
        sample_rate: float = 1.0,
        seed: int = 0,
    ):
        """
        Args:
            num_classes: number of identities C.
            embedding_size: embedding width D.
            s: logit scale.
            m_arc: ArcFace angular margin (0 = off).
            m_cos: CosFace cosine margin (0 = off).
            sample_rate: fraction of centres used per training step (1.0 = full softmax; SwinFace
                multi-task training: 0.3). Evaluation mode always uses every centre.
            seed: seed of the generator that draws the negative centres (its state is not part of
                ``state_dict``: a resumed run draws a fresh, still seeded, sequence).
        """
        super().__init__()
        if num_classes < 1 or embedding_size < 1:
            raise ValueError(f"num_classes ({num_classes}) and embedding_size ({embedding_size}) must be >= 1")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}; use 1.0 for the full softmax")
        self.num_classes, self.s, self.m_arc, self.m_cos = num_classes, s, m_arc, m_cos
        self.sample_rate = sample_rate
        self.weight = nn.Parameter(torch.normal(0.0, 0.01, (num_classes, embedding_size)))
        self._generator = torch.Generator().manual_seed(seed)

    def sample_centres(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Partial FC: every positive class plus random negatives, ``ceil(rate * C)`` centres in all.

        Args:
            labels: [B] int64 in ``[-1, C)``.

        Returns:
            ``(index, local_labels)``: sorted centre ids [K] and labels re-indexed into them [B]
            (``-1`` stays ``-1``). If the positives alone exceed K they are all kept.
        """
        device = labels.device
        positives = torch.unique(labels[labels >= 0]).cpu()
        num_sample = max(math.ceil(self.sample_rate * self.num_classes), positives.numel())
        is_positive = torch.zeros(self.num_classes, dtype=torch.bool)
        is_positive[positives] = True
        order = torch.randperm(self.num_classes, generator=self._generator)
        negatives = order[~is_positive[order]][: num_sample - positives.numel()]
        index = torch.cat([positives, negatives]).sort().values
        remap = torch.full((self.num_classes,), -1, dtype=torch.long)
        remap[index] = torch.arange(index.numel())
        remap = remap.to(device)
        local = torch.where(labels >= 0, remap[labels.clamp(min=0)], labels)
        return index.to(device), local

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Embeddings [B, D] + labels [B] (-1 = ignore) -> scalar loss."""
        if labels.numel() and not bool(((labels >= -1) & (labels < self.num_classes)).all()):
            raise ValueError(
                f"labels must be in [-1, {self.num_classes}) (-1 = ignore), got min {int(labels.min())} "
                f"max {int(labels.max())}; check the identity-to-index mapping"
            )
        weight = self.weight
        if self.training and self.sample_rate < 1.0:
            index, labels = self.sample_centres(labels)
            weight = weight[index]
        cos = F.linear(F.normalize(embeddings), F.normalize(weight)).clamp(-1.0, 1.0)  # [B, K]
        logits = margin_logits(cos, labels, s=self.s, m_arc=self.m_arc, m_cos=self.m_cos)
        valid = labels >= 0
        per_row = F.cross_entropy(logits, labels.clamp(min=0), reduction="none")
        return torch.where(valid, per_row, torch.zeros_like(per_row)).sum() / valid.sum().clamp(min=1)
