"""Evaluation of the structure model (section ``structure_evaluate``, stage ``structure-evaluate``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.core import Section

__all__ = ["StructureEvaluateParams"]


class StructureEvaluateParams(Section):
    """HEAT's metrics on ``split`` of every source (``faceops.structure.metrics``) and drawn predictions.

    ``match_px`` (8), ``iou`` (0.7) and ``min_region_area`` (20 px): HEAT's matching. Decoding: at most
    ``max_corners`` corners per image, ``rounds`` of iterative edge decoding fixing candidates at
    ``fix_positive`` / ``fix_negative``, the last round keeping those >= ``keep`` (HEAT: 3, 0.9, 0.01, 0.5).
    The plot draws the first ``plot_images`` images of the split (0: none).
    """

    sources: list[Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]] = Field(default_factory=lambda: ["synthetic"])
    split: Literal["train", "val", "test"] = "test"
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 16
    match_px: Annotated[float, Field(gt=0.0, le=256.0)] = 8.0
    iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.7
    min_region_area: Annotated[int, Field(ge=1)] = 20
    max_corners: Annotated[int, Field(ge=2, le=1000)] = 150
    rounds: Annotated[int, Field(ge=1, le=20)] = 3
    fix_positive: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    fix_negative: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.01
    keep: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    plot_images: Annotated[int, Field(ge=0, le=256)] = 16
