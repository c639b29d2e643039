"""SSPCM pseudo-label correction: pick the most consistent teacher pair, then drop outliers.

Why pairs over two time points: two co-trained teachers drift together; their snapshot from the end
of the previous epoch is a second, older opinion. Per image and joint, the pair (current or
previous teacher 1) x (current or previous teacher 2) whose argmax positions agree best is the
least likely to be wrong, and its average heatmap becomes the student's target.

Outlier removal (weights per joint, multiplied into the consistency losses):
* score mask: mean teacher peak value > ``score_threshold`` (0.1, on in the released code);
* position inconsistency (the paper's abstract; implemented but *off* in every released config, on
  here by default): ``d`` = distance between the two current teachers' argmax positions, clipped at
  ``diag - 1`` (``diag`` = heatmap diagonal); keep joints with ``d / diag < inconsistency_threshold``
  and, with ``reweight``, weight them by ``(diag - d) / diag``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from faceops.keypoints.heatmaps import decode_heatmaps

__all__ = ["PAIR_NAMES", "PairSelection", "select_pairs", "outlier_weights"]

#: The four candidate teacher pairs, in the order used by ``PairSelection.pair``.
PAIR_NAMES: tuple[str, ...] = ("cur1-cur2", "prev1-cur2", "cur1-prev2", "prev1-prev2")


@dataclass(frozen=True)
class PairSelection:
    """Result of :func:`select_pairs`.

    Attributes:
        target: [N, J, H, W] ensemble heatmap, the average of the chosen pair.
        pair: [N, J] int64 index into ``PAIR_NAMES``.
        distance: [N, J] argmax distance of the chosen pair, heatmap pixels.
    """

    target: torch.Tensor
    pair: torch.Tensor
    distance: torch.Tensor


def _argmax_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance [N, J] between the argmax positions of two heatmap batches [N, J, H, W]."""
    return torch.linalg.vector_norm(decode_heatmaps(a)[0] - decode_heatmaps(b)[0], dim=-1)


def select_pairs(
    current: tuple[torch.Tensor, torch.Tensor], previous: tuple[torch.Tensor, torch.Tensor] | None
) -> PairSelection:
    """Per image and joint, average the teacher pair whose argmax positions agree best.

    Args:
        current: (H1, H2), the current teachers' heatmaps, each [N, J, H, W].
        previous: (H1_prev, H2_prev) from the previous-epoch snapshot, or ``None`` during warm-up,
            which falls back to the current pair (the released code has no target then).

    Returns:
        :class:`PairSelection`; ties go to the earlier pair in ``PAIR_NAMES`` (the current one first).
    """
    h1, h2 = current
    if previous is None:
        return PairSelection(
            target=(h1 + h2) / 2,
            pair=torch.zeros(h1.shape[:2], dtype=torch.int64, device=h1.device),
            distance=_argmax_distance(h1, h2),
        )
    p1, p2 = previous
    pairs = ((h1, h2), (p1, h2), (h1, p2), (p1, p2))
    distance = torch.stack([_argmax_distance(a, b) for a, b in pairs])  # [4, N, J]
    best_distance, best = distance.min(dim=0)
    averages = torch.stack([(a + b) / 2 for a, b in pairs])  # [4, N, J, H, W]
    index = best[None, :, :, None, None].expand(1, *averages.shape[1:])
    return PairSelection(target=averages.gather(0, index)[0], pair=best, distance=best_distance)


def outlier_weights(
    h1: torch.Tensor,
    h2: torch.Tensor,
    *,
    score_threshold: float = 0.1,
    inconsistency_filter: bool = True,
    inconsistency_threshold: float = 0.6,
    reweight: bool = True,
) -> torch.Tensor:
    """Per-joint weights [N, J] in [0, 1] from the two current teachers' heatmaps [N, J, H, W].

    Args:
        h1, h2: the current teachers' heatmaps.
        score_threshold: keep joints whose mean teacher peak exceeds this.
        inconsistency_filter: also apply the position-inconsistency filter.
        inconsistency_threshold: keep joints with normalised argmax distance below this (0..1).
        reweight: multiply kept joints by ``(diag - d) / diag`` (only with the filter on).

    Returns:
        [N, J] float weights; 0 marks a removed joint.
    """
    if not 0.0 < inconsistency_threshold <= 1.0:
        raise ValueError(f"inconsistency_threshold={inconsistency_threshold} must be in (0, 1] (fraction of the diagonal)")
    (c1, s1), (c2, s2) = decode_heatmaps(h1), decode_heatmaps(h2)
    weight = ((s1 + s2) / 2 > score_threshold).to(h1.dtype)
    if inconsistency_filter:
        diag = math.hypot(h1.shape[-2], h1.shape[-1])
        d = torch.linalg.vector_norm(c1 - c2, dim=-1).clamp(max=diag - 1)
        weight = weight * (d / diag < inconsistency_threshold).to(h1.dtype)
        if reweight:
            weight = weight * (diag - d) / diag
    return weight
