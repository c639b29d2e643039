"""Learning-rate schedule: linear warm-up, then cosine decay, evaluated per optimizer step.

SwinFace (arXiv:2308.11509, configs): warm-up then cosine to a small floor (5e-4 -> 5e-6, i.e. a
final ratio of 0.01). The schedule is a multiplier on each param group's base lr, so the backbone
group (lr / 10) and the head group follow the same curve and keep their ratio at every step.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["warmup_cosine", "make_scheduler"]


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, final_ratio: float = 0.0) -> float:
    """lr multiplier at optimizer step ``step`` (0-based).

    Warm-up: ``(step + 1) / warmup_steps`` for ``step < warmup_steps`` (so the first step already
    moves and the last warm-up step reaches 1). Then cosine from 1 at ``step == warmup_steps`` to
    ``final_ratio`` at ``step == total_steps``; later steps stay at ``final_ratio``.

    Raises:
        ValueError: ``warmup_steps`` not in [0, total_steps) or ``final_ratio`` not in [0, 1].
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) < total_steps ({total_steps})")
    if not 0.0 <= final_ratio <= 1.0:
        raise ValueError(f"final_ratio must be in [0, 1], got {final_ratio}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int, final_ratio: float = 0.0
) -> LambdaLR:
    """A ``LambdaLR`` applying :func:`warmup_cosine` to every group; call ``.step()`` once per optimizer step.

    Its ``state_dict()`` holds only plain numbers (the multiplier is a ``functools.partial`` of a
    module-level function), so it round-trips through ``torch.load(weights_only=True)``.
    """
    warmup_cosine(0, warmup_steps=warmup_steps, total_steps=total_steps, final_ratio=final_ratio)  # validate
    factor = functools.partial(
        warmup_cosine, warmup_steps=warmup_steps, total_steps=total_steps, final_ratio=final_ratio
    )
    return LambdaLR(optimizer, factor)
