"""Low-resolution faces: LRFR's training option (``train.lowres`` / ``pretrain.lowres``) and the
low-resolution evaluation protocol (``evaluate.lowres``).

LRFR: Ling, Lu, Xu, Deng et al., "Dive into the Resolution Augmentations and Metrics in Low Resolution Face
Recognition: A Plain yet Effective New Baseline", AAAI 2023 workshop, arXiv:2302.05621.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from faceops.config.core import Section

__all__ = ["LowResEvalParams", "LowResTrainParams"]


class LowResTrainParams(Section):
    """LRFR's multi-resolution augmentation + LogExp feature loss (``faceops.train.lowres``), off by default.

    Each face gets a low-resolution view in the same forward (bicubic down to ``r`` px and back up, after
    the face's flip); ``r`` is one of ``buckets`` (px for 112 px faces, scaled to ``base.image_size``) with
    ``probs``; LRFR's class defaults 7/14/20 px at 50/30/20% (its released script uses 50/0/50%). The term
    adds ``weight x (task loss on the views + logexp_weight x LogExp(view, face))`` to the total: with the
    defaults that is twice LRFR's ``(CE(face) + CE(view)) / 2 + LogExp``, the same objective up to scale.
    LogExp: exponent ``p`` (>= 1) and ``normalization`` per sample (paper: / (p D)) or over the batch (the
    released code: one log over the batch, / (p B)).
    """

    enabled: bool = False
    buckets: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=lambda: [7, 14, 20])
    probs: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=lambda: [0.5, 0.3, 0.2])
    weight: Annotated[float, Field(ge=0.0, le=1000.0)] = 1.0
    logexp_weight: Annotated[float, Field(ge=0.0, le=1000.0)] = 2.0
    p: Annotated[float, Field(ge=1.0, le=16.0)] = 1.0
    normalization: Literal["sample", "batch"] = "sample"

    @model_validator(mode="after")
    def _buckets_match(self) -> LowResTrainParams:
        if len(self.buckets) != len(self.probs) or not self.buckets:
            raise ValueError(f"lowres.buckets ({self.buckets}) and lowres.probs ({self.probs}) need one "
                             "probability per bucket")  # fmt: skip
        if abs(sum(self.probs) - 1.0) > 1e-6:
            raise ValueError(f"lowres.probs must sum to 1, got {sum(self.probs):.6g} ({self.probs})")
        return self


class LowResEvalParams(Section):
    """The low-resolution protocol of ``evaluate`` (``faceops.eval.lowres``).

    At each of ``resolutions`` (px for 112 px faces, scaled to ``base.image_size``): verification accuracy
    with the second face of every pair degraded to that resolution, and LR-vs-HR identification rank-1
    (gallery: each identity's first face at full resolution; probes: its other faces degraded). With
    ``super_resolve`` the degraded probe is first super-resolved by the ``sr`` stage's model (models/sr)
    and both results are reported.
    """

    enabled: bool = True
    resolutions: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=lambda: [7, 14, 20, 28, 56, 112])
    super_resolve: bool = False

    @model_validator(mode="after")
    def _sorted(self) -> LowResEvalParams:
        if not self.resolutions or sorted(set(self.resolutions)) != self.resolutions:
            raise ValueError(f"lowres.resolutions must be increasing and distinct, got {self.resolutions}")
        return self
