"""The embedded synthetic data set (section ``sample``, stage ``sample``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from faceops.config.core import Section

__all__ = ["SampleParams"]


class SampleParams(Section):
    """The embedded synthetic data set (stage ``sample``)."""

    identities: Annotated[int, Field(ge=2, le=100_000)] = 60
    images_per_identity: Annotated[int, Field(ge=1, le=10_000)] = 20
    min_side: Annotated[int, Field(ge=128, le=4096)] = 160
    max_side: Annotated[int, Field(ge=128, le=4096)] = 320
    jpeg_quality: tuple[int, int] = (60, 95)

    @model_validator(mode="after")
    def _sides_ordered(self) -> "SampleParams":
        if self.min_side > self.max_side:
            raise ValueError(f"min_side ({self.min_side}) must be <= max_side ({self.max_side})")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"jpeg_quality must be [lo, hi] with 1 <= lo <= hi <= 100, got {self.jpeg_quality}")
        return self
