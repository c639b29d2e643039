"""Semi-supervised landmarks (section ``keypoints``, stage ``keypoints``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.core import Section

__all__ = ["KeypointsParams"]


class KeypointsParams(Section):
    """Semi-supervised landmarks (stage ``keypoints``, SSPCM) for faces that come without them.

    Per source, faces with given landmarks are the labelled set; ``holdout_fraction`` of them (by id
    hash) have their landmarks hidden and join the unlabelled ones, so every run measures the
    pseudo-labels' NME against the truth (the demo hides 90 %: 10 % labels, as in SSPCM's setting).
    Crops: a square ``crop_spread`` x the landmarks' mean radius around the given landmarks
    (labelled and held-out, jittered by ``crop_jitter``) or around the detector's landmarks (faces
    with none). ``max_unlabeled`` caps the unlabelled crops used for *training* (all are predicted).
    The SSPCM settings not listed keep the library defaults (``faceops.keypoints.SSPCMConfig``).
    ``compare_supervised`` also trains one network on the labelled crops alone and reports its
    held-out scores as ``supervised/...`` (the baseline SSPCM has to beat; about 1/6 of the cost).
    """

    enabled: bool = True
    sources: list[Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]] = Field(default_factory=lambda: ["sample"])
    holdout_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    max_unlabeled: Annotated[int, Field(ge=1)] = 300
    crop_spread: Annotated[float, Field(gt=1.0, le=10.0)] = 3.5
    crop_jitter: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1
    detector: Literal["mtcnn"] = "mtcnn"
    min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9
    method: Literal["sspcm", "supervised"] = "sspcm"
    input_size: Literal[64, 96, 128] = 64
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 20
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    lr: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-3
    score_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    inconsistency_filter: bool = True
    inconsistency_threshold: Annotated[float, Field(ge=0.0)] = 0.6
    compare_supervised: bool = True
