"""The two objectives of joint corner and edge training: the corner heatmap loss and the edge term.

Both follow HEAT (Chen, Qian and Furukawa, CVPR 2022, arXiv 2111.15143), as CornerFormer (Tian et al., arXiv
2304.07072) trains its one network: total = ``corner_weight`` x corner loss + edge loss (HEAT: 0.05 outdoors).

- Corner loss (the task loss ``fit`` gets): binary cross-entropy of every heatmap pixel, weight 10 where the
  target exceeds 0.5 and 1 elsewhere, summed over pixels and channels, averaged over the batch; applied to
  each direction channel as HEAT applies it to its single one.
- Edge loss (:class:`EdgeTerm`, a ``faceops.train.terms.LossTerm``): candidates are all pairs of the corners
  from :func:`faceops.structure.corners.mix_with_ground_truth` on the current heatmaps; cross-entropy with
  class weights (0.33 no edge, 1.0 edge) on every candidate's stage-1 logits, and on the stage-2 logits of
  the ``edge_multiplier`` x corners best stage-1 candidates whose label was not revealed; each image
  reveals a random share of them, drawn from U(0, 0.5] (HEAT's masked training), as known labels. Both sums
  are divided by the batch size.

Papers: CornerFormer: Hongbo Tian, Yulong Li, Linzhi Huang, Xu Ling, Yue Yang and Jiani Hu, "CornerFormer: Boosting
Corner Representation for Fine-Grained Structured Reconstruction", arXiv preprint 2304.07072, 2023; HEAT: Jiacheng
Chen, Yiming Qian and Yasutaka Furukawa, "HEAT: Holistic Edge Attention Transformer for Structured Reconstruction",
CVPR 2022, arXiv 2111.15143.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceops.structure.corners import detect_corners, mix_with_ground_truth
from faceops.structure.model import CornerEdgeNet
from faceops.train.terms import LossTerm, TermInputs

__all__ = ["CornerLoss", "EdgeTerm", "select_candidates"]

#: HEAT's edge class weights (no edge, edge).
EDGE_CLASS_WEIGHTS = (0.33, 1.0)


class CornerLoss(nn.Module):
    """HEAT's weighted BCE on the corner heatmaps (module docstring); ``fit``'s task loss.

    Args:
        weight: the corner loss's weight in the total (HEAT: 0.05 outdoors, 0.1 floorplans).
        positive_weight: pixel weight where the target exceeds 0.5 (HEAT: 10).
    """

    def __init__(self, weight: float = 0.05, positive_weight: float = 10.0) -> None:
        super().__init__()
        self.weight, self.positive_weight = weight, positive_weight

    def forward(
        self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
        masks: Mapping[str, torch.Tensor], *, progress: float = 0.0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
        target = targets["heatmap"]
        pixel_weight = torch.where(target > 0.5, self.positive_weight, 1.0)
        loss = F.binary_cross_entropy_with_logits(outputs["corners"].float(), target, weight=pixel_weight,
                                                  reduction="none").sum((1, 2, 3)).mean()  # fmt: skip
        return self.weight * loss, {"corners": loss.detach()}


def select_candidates(
    logits: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor, multiplier: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """HEAT's edge filtering: per image the ``multiplier`` x corners candidates of highest stage-1 probability.

    Args:
        logits: ``[B, P, 2]`` stage-1 logits; ``valid`` [B, P]; ``counts`` [B] corners per image.

    Returns:
        ``index`` [B, K] into the candidates (best first) and ``kept`` [B, K] bool (False: padding).
    """
    prob = logits.detach().float().softmax(-1)[..., 1].masked_fill(~valid, -1.0)
    quota = torch.minimum(valid.sum(1), counts * multiplier)  # [B]
    width = max(1, int(quota.max()))
    index = prob.argsort(dim=1, descending=True, stable=True)[:, :width]
    kept = torch.arange(width, device=logits.device)[None] < quota[:, None]
    return index, kept


class EdgeTerm(LossTerm):
    """The edge classifier's loss, added to ``fit``'s corner loss (module docstring).

    Args:
        model: the network being trained; the term calls its edge classifier, whose parameters stay the
            model's (the term holds none).
        weight: the term's weight (1 in HEAT's total).
        threshold, nms_radius, merge_px: corner detection on the current heatmaps (``detect_corners``).
        match_px, max_corners: the mix with ground truth (``mix_with_ground_truth``).
        edge_multiplier: stage 2 keeps this many candidates per corner (HEAT: 3).
        seed: seeds the term's generator (order of extra corners, revealed labels); checkpointed by ``fit``.
    """

    def __init__(
        self, model: CornerEdgeNet, *, weight: float = 1.0, threshold: float = 0.01, nms_radius: float = 3.0,
        merge_px: float = 2.0, match_px: float = 5.0, max_corners: int = 40, edge_multiplier: int = 3, seed: int = 0,
    ) -> None:  # fmt: skip
        super().__init__("edges", weight)
        self._score_edges, self._relate_edges = model.score_edges, model.relate_edges  # bound methods, not modules
        self.detect = dict(threshold=threshold, nms_radius=nms_radius, merge_px=merge_px, max_peaks=max_corners)
        self.match_px, self.max_corners, self.edge_multiplier = match_px, max_corners, edge_multiplier
        self.generator = torch.Generator().manual_seed(seed)
        self.register_buffer("class_weights", torch.tensor(EDGE_CLASS_WEIGHTS), persistent=False)

    def _candidates(self, inputs: TermInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded corners [B, N, 2], counts [B] and edge labels [B, N, N] of the batch's images."""
        n = inputs.batch_size
        prob = torch.sigmoid(inputs.outputs["corners"][:n].detach().float()).cpu().numpy()
        truth, mask = inputs.targets["corners"].cpu().numpy(), inputs.targets["corner_mask"].cpu().numpy()
        adjacency = inputs.targets["adjacency"].cpu().numpy()
        mixed = []
        for b in range(n):
            real = int(mask[b].sum())
            found = detect_corners(prob[b], **self.detect).xy
            mixed.append(mix_with_ground_truth(found, truth[b, :real], adjacency[b, :real, :real],
                                               match_px=self.match_px, max_corners=self.max_corners,
                                               generator=self.generator))  # fmt: skip
        width = max([len(xy) for xy, _ in mixed] + [2])
        corners, labels = np.zeros((n, width, 2), np.float32), np.zeros((n, width, width), bool)
        for b, (xy, lab) in enumerate(mixed):
            corners[b, : len(xy)], labels[b, : len(xy), : len(xy)] = xy, lab
        device = inputs.outputs["corners"].device
        counts = torch.tensor([len(xy) for xy, _ in mixed], device=device)
        return torch.from_numpy(corners).to(device), counts, torch.from_numpy(labels).to(device)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        n = inputs.batch_size
        outputs = {k: v[:n] for k, v in inputs.outputs.items()}
        corners, counts, labels = self._candidates(inputs)
        scores = self._score_edges(outputs, corners, counts)
        target = labels[:, scores.pairs[:, 0], scores.pairs[:, 1]].long()  # [B, P]
        stage1 = F.cross_entropy(scores.logits.float().transpose(1, 2), target, weight=self.class_weights,
                                 reduction="none")  # fmt: skip
        loss = (stage1 * scores.valid).sum() / n
        index, kept = select_candidates(scores.logits, scores.valid, counts, self.edge_multiplier)
        kept_target = target.gather(1, index)
        share = torch.rand(n, 1, generator=self.generator) * 0.5 + 0.5  # HEAT: reveal where u >= U(0.5, 1)
        revealed = (torch.rand(index.shape, generator=self.generator) >= share).to(index.device) & kept
        states = torch.where(revealed, kept_target, torch.full_like(kept_target, 2))
        tokens = scores.tokens.gather(1, index[..., None].expand(-1, -1, scores.tokens.shape[-1]))
        logits2 = self._relate_edges(tokens, states, ~kept)
        stage2 = F.cross_entropy(logits2.float().transpose(1, 2), kept_target, weight=self.class_weights,
                                 reduction="none")  # fmt: skip
        return loss + (stage2 * (kept & ~revealed)).sum() / n
