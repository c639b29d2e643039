"""Sources and validation limits (section ``ingest``, stage ``ingest``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.core import Section

__all__ = ["SourceSpec", "IngestParams"]


class SourceSpec(Section):
    """One raw source under data/raw/<name>/ and the layout it is stored in."""

    name: Annotated[str, Field(pattern=SOURCE_NAME_PATTERN, max_length=64)]
    format: Literal["imagefolder", "unlabeled", "labels_csv", "coco_keypoints"]


class IngestParams(Section):
    """Validation limits for the ``ingest`` stage."""

    sources: list[SourceSpec] = Field(default_factory=lambda: [SourceSpec(name="sample", format="labels_csv")])
    max_pixels: Annotated[int, Field(ge=1, le=500_000_000)] = 40_000_000
    max_file_bytes: Annotated[int, Field(ge=1)] = 50_000_000
    min_side: Annotated[int, Field(ge=1)] = 32
    workers: Annotated[int, Field(ge=1, le=64)] = 2

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceSpec]) -> list[SourceSpec]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {dupes}")
        if not sources:
            raise ValueError("at least one source is required")
        return sources
