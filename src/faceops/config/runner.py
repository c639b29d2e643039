"""Who computes a stage's parallel part (shared by ``align`` and ``embed``)."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from faceops.config.core import Section
from faceops.dask_runner import check_dask_address

__all__ = ["RunnerChoice"]


class RunnerChoice(Section):
    """Who computes a stage's parallel part: ``processes`` on this machine (default), or ``dask``: chunks
    of work to a Dask cluster (``faceops.dask_runner``; the ``dask`` extra), so
    several machines can share a large run. With ``dask`` and no ``dask_address`` a temporary local
    cluster runs; else the running scheduler at ``dask_address`` (``tcp://`` or ``tls://host:port``),
    whose workers must see the workspace under the same paths.
    """

    runner: Literal["processes", "dask"] = "processes"
    dask_address: str | None = None

    @field_validator("dask_address")
    @classmethod
    def _dask_address_form(cls, address: str | None) -> str | None:
        try:
            return None if address is None else check_dask_address(address)
        except ValueError:  # the error report shows the value already
            raise ValueError("must be a Dask scheduler address: tcp://host:port or tls://host:port") from None

    @model_validator(mode="after")
    def _address_needs_dask(self) -> "RunnerChoice":
        if self.dask_address is not None and self.runner != "dask":
            raise ValueError(f"dask_address is only used with runner: dask (runner is {self.runner!r})")
        return self
