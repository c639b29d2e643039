"""Operations: inbox, retraining, promotion (section ``ops``; read by ``faceops serve``, no stage)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from faceops.config.core import Section

__all__ = ["PromotionParams", "InboxParams", "RetrainParams", "MonitorActionParams", "OpsParams"]


class PromotionParams(Section):
    """When a newly evaluated model replaces the promoted one (``model@vN`` git tags).

    ``metric`` is a key of metrics/evaluate.json; the candidate must beat the promoted model by
    more than ``margin`` in the direction ``mode``.
    """

    metric: Annotated[str, Field(min_length=1)] = "sample/verif/acc"
    mode: Literal["max", "min"] = "max"
    margin: Annotated[float, Field(ge=0.0)] = 0.0


class InboxParams(Section):
    """The watched inbox: ``path/<source>/`` folders whose files become a new version of that source."""

    path: Annotated[str, Field(min_length=1)] = "data/inbox"
    settle_seconds: Annotated[float, Field(ge=0.0, le=86_400.0)] = 10.0
    poll_seconds: Annotated[float, Field(gt=0.0, le=3600.0)] = 2.0


class RetrainParams(Section):
    """Scheduled retraining (the ``retrain`` deployment of ``faceops serve``).

    ``from_promoted``: before it runs, the retrain flow sets ``train.init`` in params.yaml to the newest
    ``model@vN`` tag (when there is one), so each scheduled run fine-tunes the promoted model on the data of
    the day instead of starting over; the params change goes into the version commit like any other.
    """

    cron: str = "0 3 * * 0"
    timezone: Annotated[str, Field(min_length=1)] = "UTC"
    enabled: bool = True
    from_promoted: bool = False

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, cron: str) -> str:
        fields = cron.split()
        if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*/,?#-]+", f) for f in fields):
            raise ValueError(f"cron must have 5 fields (minute hour day month weekday), e.g. '0 3 * * 0'; got {cron!r}")
        return cron


class MonitorActionParams(Section):
    """What the new-data flow does with the ``monitor`` stage's verdict on each inbox batch.

    Every batch gets a Prefect artifact (per source: Gscore, estimated OOD share, recommendation, the most-OOD
    photos). ``action``: ``report`` stops there; ``retrain`` also runs the retrain flow when the monitor
    recommends it. Before the pipeline runs, the flow points ``monitor.model`` at the newest ``model@vN`` tag
    (when there is one), so new photos are judged against the promoted model.
    """

    action: Literal["report", "retrain"] = "report"


class OpsParams(Section):
    """Operations read by ``faceops serve`` and the new-data/retrain flows (not by any DVC stage)."""

    inbox: InboxParams = Field(default_factory=InboxParams)
    retrain: RetrainParams = Field(default_factory=RetrainParams)
    promotion: PromotionParams = Field(default_factory=PromotionParams)
    monitor: MonitorActionParams = Field(default_factory=MonitorActionParams)
    commit_versions: bool = True
