"""Contact sheets and summary (section ``report``, stage ``report``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from faceops.config.core import Section

__all__ = ["ReportParams"]


class ReportParams(Section):
    """Contact sheets and summary (stage ``report``)."""

    faces_per_split: Annotated[int, Field(ge=1, le=1024)] = 48
    columns: Annotated[int, Field(ge=1, le=64)] = 12
