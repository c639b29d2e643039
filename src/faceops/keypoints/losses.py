"""SSPCM losses: joint-weighted heatmap MSE, supervised and consistency terms.

Contract: heatmaps [N, J, H, W] (float), weights [N, J] (0 removes a joint). The weight multiplies
prediction and target before the squared error (as JointsMSELoss does), so a joint with weight 0
contributes exactly zero gradient to its channel. Targets are treated as constants (detached).
"""

from __future__ import annotations

import torch

__all__ = ["joints_mse", "supervised_loss", "consistency_loss"]


def joints_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over joints of ``0.5 * MSE(pred * w, target * w)``.

    Args:
        pred: [N, J, H, W] predicted heatmaps.
        target: [N, J, H, W] target heatmaps (detached here).
        weight: optional [N, J] per-joint weights.

    Returns:
        Scalar loss.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    diff = pred - target.detach()
    if weight is not None:
        diff = diff * weight.detach().to(diff.dtype)[..., None, None]
    return 0.5 * diff.pow(2).mean()


def supervised_loss(preds: list[torch.Tensor], target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``0.5 * sum`` of the labelled-data MSE of every network (SSPCM's L_sup)."""
    return 0.5 * sum(joints_mse(p, target, weight) for p in preds)


def consistency_loss(
    students: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """SSPCM's L_cons: NET1 learns from H2's pseudo-labels, NET2 from H1's, NET3 from the ensemble's.

    Args:
        students: (C1, C2, C3) predictions on the hard-augmented unlabelled images.
        targets: the three target heatmaps, already in each student's (warped) frame.
        weights: [N, J] joint weights per student: the outlier weights, times 0 where the hard
            affine moved that student's pseudo-keypoint off the map.
    """
    return sum(joints_mse(c, t, w) for c, t, w in zip(students, targets, weights, strict=True))
