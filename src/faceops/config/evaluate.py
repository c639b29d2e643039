"""Evaluation of the trained model (section ``evaluate``, stage ``evaluate``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.core import Section
from faceops.config.lowres import LowResEvalParams

__all__ = ["EvaluateParams"]


class EvaluateParams(Section):
    """Evaluation of the trained model (stage ``evaluate``); ``lowres``: the low-resolution protocol
    (``faceops.config.lowres``)."""

    sources: list[Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]] = Field(default_factory=lambda: ["sample"])
    split: Literal["train", "val", "test", "unlabeled"] = "test"
    n_pairs: Annotated[int, Field(ge=2, le=10_000_000)] = 3000
    folds: Annotated[int, Field(ge=2, le=100)] = 10
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    num_workers: Annotated[int, Field(ge=0, le=64)] = 0
    bin_sets: list[Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]] = Field(default_factory=list)
    lowres: LowResEvalParams = Field(default_factory=LowResEvalParams)
