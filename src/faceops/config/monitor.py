"""New-data monitoring against the model (section ``monitor``, stage ``monitor``): OOD score, Gscore, verdict."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.core import Section

__all__ = ["MonitorParams"]


class MonitorParams(Section):
    """Is each source's newest data like what the model trained on? (stage ``monitor``, ``faceops.ood``).

    ``model``: ``trained`` scores against this workspace's trained model, every photo it did not train on
    counting as incoming; a promotion tag ``model@vN`` scores against the model promoted as that version,
    incoming being the photos added since (the ingest manifest at that version says which were there);
    ``faceops serve``'s new-data flow moves it to the newest tag. ``sources``: sources to score (empty:
    all). ``score``: ``knn`` / ``mahalanobis`` on the embedding, or ``msp`` / ``max_logit`` / ``energy`` on
    the ``head`` output. ``gscore``: the reconstructed variant that decides (faceops.ood.gscore).
    ``calibration_share`` of the reference identities give the in-distribution scores. ``retrain`` when a
    source brings >= ``min_incoming`` photos with Gscore >= ``retrain_min_gscore`` and an estimated OOD
    share >= ``retrain_min_share``. ``sheet_faces`` most-OOD photos per source go on its contact sheet.
    """

    model: Annotated[str, Field(pattern=r"^(trained|model@v[1-9][0-9]*)$")] = "trained"
    sources: list[Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]] = Field(default_factory=list)
    score: Literal["knn", "mahalanobis", "msp", "max_logit", "energy"] = "knn"
    head: Annotated[str, Field(min_length=1)] = "Expression"
    k: Annotated[int, Field(ge=1, le=10_000)] = 10
    gscore: Literal["mixture", "pseudo_label", "threshold"] = "threshold"
    tpr: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    calibration_share: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25
    min_incoming: Annotated[int, Field(ge=2)] = 20
    retrain_min_gscore: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    retrain_min_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2
    sheet_faces: Annotated[int, Field(ge=1, le=1024)] = 24
    columns: Annotated[int, Field(ge=1, le=64)] = 8
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64

    @model_validator(mode="after")
    def _unique_sources(self) -> MonitorParams:
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"monitor.sources lists a source twice: {self.sources}")
        return self
