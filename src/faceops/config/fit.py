"""What ``pretrain`` and ``train`` share: data mix, optimizer, schedule, margin, checkpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.core import Section
from faceops.config.lowres import LowResTrainParams

__all__ = ["TrainSource", "FitParams"]


class TrainSource(Section):
    """One shard source (data/shards/<name>/, its ``train`` split) and its share of every batch."""

    name: Annotated[str, Field(pattern=SOURCE_NAME_PATTERN, max_length=64)]
    share: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0


class FitParams(Section):
    """What ``pretrain`` and ``train`` share: data mix, AdamW + warm-up/cosine, margin, checkpoints.

    SwinFace (arXiv:2308.11509): AdamW, linear warm-up then cosine to ``lr * final_lr_ratio``, CosFace
    (``margin_scale`` s=64, ``margin_cos`` m=0.4), Partial FC ``sample_rate``, grad-norm clip 5 on the
    backbone only (0 = off). ``batch_size`` is per process (torchrun: global batch = batch_size x
    processes), split over ``sources`` by share. ``precision`` applies on CUDA only; CPU runs are fp32
    so that a seeded run is reproducible. Resumable checkpoints every ``checkpoint_every`` steps;
    the step log (``faceops.io.steplog``) gets interval means every ``log_every`` steps. ``lowres``: LRFR's
    multi-resolution views + LogExp term (``faceops.config.lowres``), off by default.
    """

    sources: list[TrainSource] = Field(default_factory=lambda: [TrainSource(name="sample")])
    steps: Annotated[int, Field(ge=1, le=10_000_000)] = 100
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 32
    lr: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    warmup_steps: Annotated[int, Field(ge=0)] = 10
    final_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    backbone_lr_scale: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    grad_clip: Annotated[float, Field(ge=0.0)] = 5.0
    margin_scale: Annotated[float, Field(gt=0.0, le=1024.0)] = 64.0
    margin_cos: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.4
    sample_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    hflip: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    shuffle_buffer: Annotated[int, Field(ge=0, le=1_000_000)] = 1000
    num_workers: Annotated[int, Field(ge=0, le=64)] = 0
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    checkpoint_every: Annotated[int, Field(ge=1)] = 50
    log_every: Annotated[int, Field(ge=1)] = 1
    lowres: LowResTrainParams = Field(default_factory=LowResTrainParams)

    @model_validator(mode="after")
    def _consistent(self) -> "FitParams":
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be < steps ({self.steps})")
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes or not names:
            raise ValueError(f"sources must be non-empty with unique names; repeated: {dupes}")
        total = sum(s.share for s in self.sources)
        if abs(total - 1.0) > 1e-6:
            shares = {s.name: s.share for s in self.sources}
            raise ValueError(f"source shares must sum to 1, got {total:.6g} ({shares})")
        if len(self.sources) > self.batch_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must give every one of the {len(self.sources)} sources a sample"
            )
        return self
