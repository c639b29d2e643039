"""GABN attention balancing, a training option of ``train`` and ``adapt`` (their ``gabn:`` subsection)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from faceops.config.core import Section

__all__ = ["GabnParams"]


class GabnParams(Section):
    """Gradient Attention Balance Network (Huang et al., CVPR Workshops 2023, arXiv 2304.02284): two extra loss
    terms (``faceops.fairness``), off unless ``enabled``.

    ``adversarial_weight``: weight of the group discriminator's loss on the gradient attention maps; the
    backbone gets it reversed (it learns maps the discriminator cannot tell apart by group). It ramps up
    linearly from ``adversarial_warmup`` to ``adversarial_full`` (fractions of the run).
    ``discriminator_width``: hidden width of the discriminator (an MLP on the flattened map).
    ``erase_top_n`` cells of the map (the most attended) are erased, to mid grey, in a copy of a face
    chosen with ``erase_probability``, from ``erase_warmup`` (fraction of the run) on; the copy joins the
    next step's forward under the face's labels, its recognition loss weighted by ``erase_weight``.
    Every value is our reconstruction (the paper's were not available to us): see docs/fairness.md.
    """

    enabled: bool = False
    adversarial_weight: Annotated[float, Field(ge=0.0, le=100.0)] = 0.1
    adversarial_warmup: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    adversarial_full: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    discriminator_width: Annotated[int, Field(ge=1, le=4096)] = 64
    erase_top_n: Annotated[int, Field(ge=1, le=64)] = 2
    erase_probability: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    erase_warmup: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    erase_weight: Annotated[float, Field(ge=0.0, le=100.0)] = 1.0

    @model_validator(mode="after")
    def _ramp_in_order(self) -> "GabnParams":
        if self.adversarial_full < self.adversarial_warmup:
            raise ValueError(f"gabn.adversarial_full ({self.adversarial_full}) must be >= gabn.adversarial_warmup "
                             f"({self.adversarial_warmup}): the ramp rises from warm-up to full")  # fmt: skip
        return self
