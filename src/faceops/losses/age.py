"""SwinFace's annealed age-regression loss (arXiv:2308.11509; lxq1000/SwinFace ``analysis/losses.py``).

With d = prediction - target and training progress p = t / T in [0, 1]:
``L = mean[(1 - p) * d^2 / 2 + p * (1 - exp(-d^2 / (2 sigma^2)))]``, sigma = 3.
Training starts as half-MSE (strong pull from far away) and ends as a smooth version of the LAP
epsilon-error (bounded in [0, 1], so outliers stop dominating). Predictions [B] or [B, 1] and targets
[B] are compared element by element (the reference code broadcast [B, 1] against [B] into [B, B]).
Computed in float32 whatever the input dtype.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

__all__ = ["annealed_age_loss", "AnnealedAgeLoss"]


def annealed_age_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    progress: float,
    *,
    sigma: float = 3.0,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """Annealed mix of half squared error and the Gaussian (epsilon-error) loss.

    Args:
        pred: predicted ages [B] or [B, 1].
        target: true ages [B] (same number of elements as ``pred``).
        progress: t / T in [0, 1] (0 = first step, 1 = last step).
        sigma: width of the Gaussian term in years.
        reduction: ``"mean"`` -> scalar, ``"none"`` -> per-sample [B].

    Raises:
        ValueError: ``progress`` outside [0, 1], or ``pred`` / ``target`` sizes differ.
    """
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be t / T in [0, 1], got {progress}")
    if pred.numel() != target.numel():
        raise ValueError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must hold one age per sample; "
            "pass pred as [B] or [B, 1] and target as [B]"
        )
    d2 = (pred.reshape(-1).float() - target.reshape(-1).float()) ** 2
    loss = (1.0 - progress) * d2 / 2 + progress * (1.0 - torch.exp(-d2 / (2 * sigma**2)))
    return loss.mean() if reduction == "mean" else loss


class AnnealedAgeLoss(nn.Module):
    """Module form of ``annealed_age_loss``; the progress is passed on every call."""

    def __init__(self, sigma: float = 3.0):
        """
        Args:
            sigma: width of the Gaussian term in years (SwinFace: 3).
        """
        super().__init__()
        self.sigma = sigma

    def forward(self, pred: torch.Tensor, target: torch.Tensor, progress: float) -> torch.Tensor:
        """pred [B] or [B, 1], target [B], progress in [0, 1] -> scalar."""
        return annealed_age_loss(pred, target, progress, sigma=self.sigma)
