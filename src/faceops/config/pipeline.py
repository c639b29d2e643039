"""Orchestration settings (section ``pipeline``; read by the Prefect flow, no stage)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from faceops.config.core import Section

__all__ = ["PipelineParams"]


class PipelineParams(Section):
    """Orchestration settings read by the Prefect flow (not by any DVC stage)."""

    retries: Annotated[int, Field(ge=0, le=10)] = 0
    retry_delay_seconds: Annotated[float, Field(ge=0.0, le=3600.0)] = 10.0
    timeout_seconds: Annotated[float, Field(gt=0.0)] = 3600.0
    stage_timeout_seconds: dict[str, Annotated[float, Field(gt=0.0)]] = Field(default_factory=dict)
    stage_retries: dict[str, Annotated[int, Field(ge=0, le=10)]] = Field(default_factory=dict)
    lock_wait_seconds: Annotated[float, Field(ge=0.0)] = 0.0
