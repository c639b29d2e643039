"""The generated building data set (section ``structure_sample``, stage ``structure-sample``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from faceops.config.core import Section

__all__ = ["StructureSampleParams"]


class StructureSampleParams(Section):
    """The generated building scenes (``faceops.structure.synthetic``), written in HEAT's layout.

    ``images`` scenes of ``image_size`` px (HEAT's outdoor set: 256), each with ``buildings`` (an
    inclusive range) buildings; JPEG ``jpeg_quality``.
    """

    images: Annotated[int, Field(ge=1, le=1_000_000)] = 2000
    image_size: Annotated[int, Field(ge=32, le=2048)] = 256
    buildings: tuple[int, int] = (2, 4)
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 95

    @model_validator(mode="after")
    def _buildings_range(self) -> StructureSampleParams:
        lo, hi = self.buildings
        if not 1 <= lo <= hi <= 50:
            raise ValueError(f"buildings must be [lo, hi] with 1 <= lo <= hi <= 50, got {list(self.buildings)}")
        return self
