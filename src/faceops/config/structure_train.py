"""Joint corner and edge training (section ``structure_train``, stage ``structure-train``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from faceops.config.core import Section
from faceops.config.fit import TrainSource

__all__ = ["CornerDetection", "StructureTrainParams"]


class CornerDetection(Section):
    """Corners from the heatmaps, in training (edge candidates) and at inference (``faceops.structure.corners``).

    ``threshold``: HEAT's 0.01; ``nms_radius`` px within a channel and ``merge_px`` across channels: ours.
    """

    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.01
    nms_radius: Annotated[float, Field(ge=1.0, le=64.0)] = 3.0
    merge_px: Annotated[float, Field(ge=0.0, le=64.0)] = 2.0


class StructureTrainParams(Section):
    """One network for corners and edges, trained jointly with ``faceops.train.fit`` (HEAT's recipe).

    ``corner_channels`` (1 = HEAT, 4 = CornerFormer's direction channels) and ``feature_sharing``
    (``backbone`` = HEAT, ``multiscale`` = CornerFormer) are the two reconstructed choices
    (``faceops.structure``); ``direction_offset_deg`` turns the channels' sectors. ``sigma``: Gaussian of the
    corner targets (HEAT: 2 px). ``corner_weight``: the corner loss in the total (HEAT outdoors: 0.05).
    Edge candidates in training: detections within ``match_px`` of a true corner replace it, others join up
    to ``max_corners`` (HEAT: 5 px, 150); stage 2 keeps ``edge_multiplier`` x corners candidates (HEAT: 3).
    AdamW (HEAT: lr 2e-4, weight decay 1e-5) with warm-up and cosine decay to ``lr * final_lr_ratio``;
    ``grad_clip`` bounds the backbone's gradient norm (HEAT clips everything at 0.1). ``precision`` applies
    on CUDA only. Resumable checkpoints every ``checkpoint_every`` steps, the step log every ``log_every``.
    """

    model: Literal["cornerformer_tiny", "cornerformer_base"] = "cornerformer_base"
    corner_channels: Literal[1, 4] = 4
    feature_sharing: Literal["backbone", "multiscale"] = "multiscale"
    direction_offset_deg: Annotated[float, Field(ge=0.0, lt=360.0)] = 0.0
    sources: list[TrainSource] = Field(default_factory=lambda: [TrainSource(name="synthetic")])
    sigma: Annotated[float, Field(gt=0.0, le=16.0)] = 2.0
    corner_weight: Annotated[float, Field(gt=0.0, le=100.0)] = 0.05
    detection: CornerDetection = Field(default_factory=CornerDetection)
    match_px: Annotated[float, Field(gt=0.0, le=64.0)] = 5.0
    max_corners: Annotated[int, Field(ge=2, le=1000)] = 150
    edge_multiplier: Annotated[int, Field(ge=1, le=100)] = 3
    steps: Annotated[int, Field(ge=1, le=10_000_000)] = 50_000
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 16
    lr: Annotated[float, Field(gt=0.0, le=1.0)] = 2e-4
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = 1e-5
    warmup_steps: Annotated[int, Field(ge=0)] = 500
    final_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    grad_clip: Annotated[float, Field(ge=0.0)] = 0.1
    shuffle_buffer: Annotated[int, Field(ge=0, le=1_000_000)] = 1000
    num_workers: Annotated[int, Field(ge=0, le=64)] = 0
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    checkpoint_every: Annotated[int, Field(ge=1)] = 500
    log_every: Annotated[int, Field(ge=1)] = 10

    @model_validator(mode="after")
    def _consistent(self) -> StructureTrainParams:
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be < steps ({self.steps})")
        names = [s.name for s in self.sources]
        if not names or len(set(names)) != len(names) or abs(sum(s.share for s in self.sources) - 1.0) > 1e-6:
            raise ValueError(f"sources must be non-empty, unique, with shares summing to 1; got "
                             f"{[(s.name, s.share) for s in self.sources]}")  # fmt: skip
        return self
