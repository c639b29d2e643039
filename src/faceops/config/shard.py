"""WebDataset shards (section ``shard``, stage ``shard``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from faceops.config.core import Section

__all__ = ["SplitFractions", "ShardParams"]


class SplitFractions(Section):
    train: Annotated[float, Field(ge=0.0, le=1.0)] = 0.7
    val: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    test: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitFractions":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must sum to 1, got {total:.6g}")
        return self


class ShardParams(Section):
    """WebDataset shards (stage ``shard``)."""

    maxcount: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    split: SplitFractions = Field(default_factory=SplitFractions)
