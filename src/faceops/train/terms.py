"""Extra loss terms: the one way a training method adds an objective to ``fit``'s task loss.

Why one interface: several methods change what a training step optimises (a low-resolution view and a
feature loss between the views, an adversarial term on unlabeled target images, an attention-balance term
across groups). Each is a :class:`LossTerm`; ``fit`` stays one flat loop for all of them.

A step with terms:

1. each term may append rows to the forward batch (:meth:`LossTerm.extra_rows`: another view of the batch's
   faces, images of another domain ...), already normalised like the batch;
2. the model runs **once** on the whole batch;
3. the task loss sees the batch's own rows only;
4. each term returns a scalar from the outputs on the whole batch (:meth:`LossTerm.forward`, given
   :class:`TermInputs`: its rows are ``inputs.rows``), and the total adds ``weight x schedule(progress) x
   value``; ``loss/<name>`` is logged like every other part.

A term is an ``nn.Module``: its parameters (a discriminator, a classifier) train with the heads' group,
DDP averages their gradients, and its ``state_dict`` (with ``get_extra_state`` for anything that is not a
tensor, e.g. the position of a stream it reads) goes into the resumable checkpoint, as do the
``torch.Generator`` objects it holds as attributes, so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

__all__ = ["LossTerm", "TermInputs", "constant", "linear_ramp", "cosine_ramp"]

TaskLoss = Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]],
                    tuple[torch.Tensor, dict[str, torch.Tensor]]]  # fmt: skip


@dataclass(frozen=True)
class TermInputs:
    """What a term sees in a step.

    Attributes:
        images: the whole forward batch, normalised ``[B + added rows, C, H, W]`` (the batch's rows first).
        outputs: the model's outputs on the whole forward batch (output name -> ``[B + added, ...]``).
        batch_size: ``B``, the batch's own rows (``outputs[...][:batch_size]``).
        rows: this term's rows in the forward batch (an empty slice when it added none).
        targets, masks: the batch's labels (``[B]`` each, on the training device).
        batch: the batch as the stream gave it (``keys``, ``sources``; uint8 images on the CPU).
        progress: step / total steps, in [0, 1).
        task_loss: the task loss, ``(outputs, targets, masks) -> (total, parts)``, for a term that also
            supervises its own rows with the batch's labels (another view of the same faces).
    """

    images: torch.Tensor
    outputs: Mapping[str, torch.Tensor]
    batch_size: int
    rows: slice
    targets: Mapping[str, torch.Tensor]
    masks: Mapping[str, torch.Tensor]
    batch: Any
    progress: float
    task_loss: TaskLoss


class LossTerm(nn.Module):
    """Base of an extra objective; subclasses implement :meth:`forward` and may override the rest.

    Args:
        name: logged as ``loss/<name>``; unique among a run's terms.
        weight: the term's weight in the total loss (0 turns it off without changing the batch).
        schedule: progress in [0, 1) -> multiplier of ``weight`` (:func:`constant`, :func:`linear_ramp` ...).
    """

    def __init__(self, name: str, weight: float, schedule: Callable[[float], float] | None = None) -> None:
        super().__init__()
        if not name or "/" in name:
            raise ValueError(f"a loss term needs a name without '/', got {name!r}")
        if weight < 0 or not math.isfinite(weight):
            raise ValueError(f"loss term {name!r}: weight must be finite and >= 0, got {weight}")
        self.name, self.weight = name, float(weight)
        self.schedule = schedule or constant

    def extra_rows(self, images: torch.Tensor, batch: Any) -> torch.Tensor | None:
        """Normalised images to append to the forward batch (default: none).

        Args:
            images: the batch's normalised images ``[B, C, H, W]`` on the training device.
            batch: the batch as the stream gave it.
        """
        return None

    def factor(self, progress: float) -> float:
        """The term's multiplier at ``progress``: ``weight x schedule(progress)``."""
        return self.weight * float(self.schedule(progress))

    def forward(self, inputs: TermInputs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def constant(progress: float) -> float:  # noqa: ARG001 - the schedule signature
    """The same weight for the whole run."""
    return 1.0


def linear_ramp(start: float, end: float) -> Callable[[float], float]:
    """0 before ``start``, rising linearly to 1 at ``end`` (fractions of the run), then 1."""
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(f"ramp needs 0 <= start <= end <= 1, got {start}, {end}")

    def ramp(progress: float) -> float:
        if progress < start:
            return 0.0
        return 1.0 if end == start or progress >= end else (progress - start) / (end - start)

    return ramp


def cosine_ramp(start: float, end: float) -> Callable[[float], float]:
    """Like :func:`linear_ramp` with a half-cosine rise (smooth at both ends)."""
    linear = linear_ramp(start, end)
    return lambda progress: 0.5 - 0.5 * math.cos(math.pi * linear(progress))
