"""Structure sources into shards (section ``structure_shard``, stage ``structure-shard``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.core import Section
from faceops.config.shard import SplitFractions

__all__ = ["StructureShardParams", "StructureSource"]


class StructureSource(Section):
    """One structure source under the stage's raw folder and its layout (HEAT's: ``rgb/`` + ``annot/``)."""

    name: Annotated[str, Field(pattern=SOURCE_NAME_PATTERN, max_length=64)]
    format: Literal["heat_planar"] = "heat_planar"


class StructureShardParams(Section):
    """Ingest (``faceops.ingest``, layout ``heat_planar``), resize, split and shard the structure sources.

    Images are resized to ``image_size`` square (corners scaled with them; re-encoded at ``jpeg_quality``,
    kept byte for byte when already that size). An image's split is the one HEAT's list files give it,
    else a hash of its id with the ``split`` fractions. ``max_pixels``, ``max_file_bytes``, ``min_side``:
    ingest's checks of every image.
    """

    sources: list[StructureSource] = Field(default_factory=lambda: [StructureSource(name="synthetic")])
    image_size: Annotated[int, Field(ge=32, le=2048, multiple_of=4)] = 256
    split: SplitFractions = Field(default_factory=SplitFractions)
    maxcount: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 95
    max_pixels: Annotated[int, Field(ge=1, le=500_000_000)] = 40_000_000
    max_file_bytes: Annotated[int, Field(ge=1)] = 50_000_000
    min_side: Annotated[int, Field(ge=1)] = 32

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[StructureSource]) -> list[StructureSource]:
        names = [s.name for s in sources]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"sources must be non-empty with unique names, got {names}")
        return sources
