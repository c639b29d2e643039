"""Recognition-only pre-training (section ``pretrain``, stage ``pretrain``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from faceops.config.fit import FitParams

__all__ = ["PretrainParams"]


class PretrainParams(FitParams):
    """Recognition-only pre-training (stage ``pretrain``); ``enabled: false`` makes ``train`` start from scratch."""

    enabled: bool = True
    model: Literal["swinface_cpu_rec", "swinface_swin_t_rec"] = "swinface_cpu_rec"
    steps: Annotated[int, Field(ge=1, le=10_000_000)] = 120
    warmup_steps: Annotated[int, Field(ge=0)] = 12
