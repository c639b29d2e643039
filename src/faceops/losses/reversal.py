"""Gradient reversal: identity in the forward pass, gradient times ``-scale`` in the backward pass.

Ganin and Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015 (arXiv 1409.7495).
Why: a minimax objective ``min_A max_B L`` becomes one loss and one backward pass. Put the layer between
the part that should *maximise* ``L`` (a feature extractor) and the part that *minimises* it (a
classifier or discriminator): the minimiser gets ``+dL``, everything before the layer ``-scale * dL``.
AIN (faceops.adapt: mutual information, extractor vs target classifier) and GABN (faceops.fairness:
attention maps vs a group discriminator) both train their adversaries this way.

This is a trick that changes the gradient, so it is pinned by a test (tests/test_adapt.py compares it with
two separate autograd calls).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["reverse_gradient"]


class _ReverseGradient(torch.autograd.Function):
    """``y = x``; ``dL/dx = -scale * dL/dy`` (a new tensor: the incoming gradient is not edited in place)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * -ctx.scale, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``x`` unchanged, with its gradient multiplied by ``-scale`` on the way back.

    Args:
        x: any tensor [...] in the graph.
        scale: the factor of the reversed gradient (>= 0; 0 cuts the gradient, like ``detach``).

    Raises:
        ValueError: ``scale`` is negative (that would be no reversal at all: use the tensor itself).
    """
    if scale < 0:
        raise ValueError(f"gradient reversal scale must be >= 0, got {scale}; a negative one is no reversal")
    return _ReverseGradient.apply(x, float(scale))
