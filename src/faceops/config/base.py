"""Values every stage shares (section ``base``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from faceops.config.core import Section

__all__ = ["BaseParams"]


class BaseParams(Section):
    """Values every stage shares."""

    seed: Annotated[int, Field(ge=0)] = 0
    image_size: Literal[112] = 112
