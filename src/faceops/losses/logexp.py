"""LogExp: LRFR's feature distance between a face's high- and low-resolution embeddings.

Paper: Ling, Lu, Xu, Deng et al., "Dive into the Resolution Augmentations and Metrics
in Low Resolution Face Recognition: A Plain yet Effective New Baseline", AAAI 2023 workshop, arXiv:2302.05621.
Only its abstract was readable to us; the formula is the one in the authors' README and code
(github.com/hurricanelx/LRFR, ``src/metrics.py`` class ``ExpDist``, commit 1e4b4ee). Written independently.

Per sample, with ``a_i = |x_i - y_i|^p`` over the D dimensions (paper/README form, ``reduction="sample"``)::

    L = log(1 + sum_i (exp(a_i) - 1)) / (p * D),        averaged over the batch.

The released code takes one log over the whole batch and divides by p and the batch size B instead of D
(``reduction="batch"``): ``log(1 + sum_{b,i} (exp(a_bi) - 1)) / (p * B)``. For small errors L is the L1
distance / D (for p = 1); for one large error it grows like ``a_max / (p D)``; the slope of each dimension
is ``(1/D) e^{a_i} / (1 + sum_j (e^{a_j} - 1)) <= 1/D`` (p = 1): a softmax-like weighting towards the worst
dimensions that, unlike L2, does not vanish near 0 and, unlike an exponential, never explodes.

Numerics: ``log1p``/``expm1`` while every ``a_i`` is moderate, else the max-shifted form
``a_max + log(sum_i e^{a_i - a_max} - (D - 1) e^{-a_max})`` (no overflow); ``|.|`` has the subgradient 0 at 0,
so identical embeddings give a zero, finite gradient. ``p >= 1`` (below 1 the slope at 0 is infinite).

Tensor contract: ``x``, ``y`` [B, D] float (LRFR compares L2-normalised embeddings; normalise before);
returns a scalar; inputs are not modified.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["LogExpLoss", "log_sum_expm1", "logexp_loss"]

Reduction = Literal["sample", "batch"]
#: Above this the log1p/expm1 form would lose range in float32; the max-shifted form takes over.
_SHIFT_ABOVE = 30.0


def log_sum_expm1(a: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log(1 + sum(exp(a) - 1))`` along ``dim`` for ``a >= 0``, without overflow or cancellation."""
    peak = a.amax(dim=dim)
    small = torch.log1p(torch.expm1(a.clamp(max=_SHIFT_ABOVE)).sum(dim=dim))
    others = a.shape[dim] - 1
    large = peak + torch.log(torch.exp(a - peak.unsqueeze(dim)).sum(dim=dim) - others * torch.exp(-peak))
    return torch.where(peak <= _SHIFT_ABOVE, small, large)


def logexp_loss(x: torch.Tensor, y: torch.Tensor, *, p: float = 1.0, reduction: Reduction = "sample") -> torch.Tensor:
    """LogExp distance between ``x`` and ``y`` [B, D] (module docstring); a scalar >= 0, 0 iff x == y.

    Raises:
        ValueError: shapes differ or are not [B, D], ``p < 1``, or an unknown ``reduction``.
    """
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"logexp_loss needs two [B, D] tensors of one shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")  # fmt: skip
    if p < 1:
        raise ValueError(f"logexp_loss needs p >= 1 (the slope of |d|^p at 0 is infinite below 1), got {p}")
    a = (x - y).abs().pow(p)  # [B, D]
    batch, dims = a.shape
    if reduction == "sample":
        return (log_sum_expm1(a, dim=1) / (p * dims)).mean()
    if reduction == "batch":
        return log_sum_expm1(a.reshape(-1), dim=0) / (p * batch)
    raise ValueError(f"unknown LogExp reduction {reduction!r}; expected 'sample' (paper) or 'batch' (code)")


class LogExpLoss(nn.Module):
    """:func:`logexp_loss` with its ``p`` and ``reduction`` held (LRFR: p = 1)."""

    def __init__(self, p: float = 1.0, reduction: Reduction = "sample") -> None:
        super().__init__()
        if p < 1 or reduction not in ("sample", "batch"):
            raise ValueError(f"LogExpLoss needs p >= 1 and reduction 'sample' or 'batch', got {p}, {reduction!r}")
        self.p, self.reduction = p, reduction

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return logexp_loss(x, y, p=self.p, reduction=self.reduction)
