"""AIN domain adaptation (section ``adapt``, stage ``adapt``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.core import Section
from faceops.config.fit import FitParams
from faceops.config.gabn import GabnParams

__all__ = ["AdaptParams", "TargetDomain"]

GroupName = Annotated[str, Field(min_length=1, pattern=r"^[^/]+$")]


class TargetDomain(Section):
    """The unlabeled target: a source's split, only the samples of ``groups`` (empty: all of them).

    Its identity labels never reach training; when present they only score the clustering.
    """

    source: Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)] = "sample"
    split: Literal["train", "val", "test", "unlabeled"] = "train"
    groups: list[GroupName] = Field(default_factory=lambda: ["g1", "g2", "g3"])


class AdaptParams(FitParams):
    """Adapt the ``train`` stage's model to an unlabeled target domain with AIN (Wang and Deng, IEEE TIP 2022).

    The labelled source is the train split of ``sources`` (``FitParams``: shares of every batch), kept to the
    samples of ``source_groups`` (empty: all). ``rounds`` rounds, each: embed source and target with the
    current model, cluster the target with the linkage GCN learnt on the source (the ``cluster`` section's
    method and settings), then train ``steps`` steps (re-clustering every ``steps`` steps, i.e. every
    ``steps x target_batch / target size`` target epochs, reported in the metrics) on the source batch plus
    ``target_batch`` target rows: the pseudo-identity margin loss (``pseudo_weight``) through a target
    classifier initialised from the cluster centroids, and the adversarial mutual information
    (``mi_weight``, posteriors at inverse temperature ``mi_scale``), ramped linearly from ``mi_warmup`` to
    ``mi_full`` of each round. ``maxcount``: samples per shard of the domain copies the rounds train on.
    ``gabn``: GABN's terms on the source batch (needs at least 2 source groups).
    """

    model: Literal["swinface_cpu", "swinface_swin_t"] = "swinface_cpu"
    init: Literal["train"] = "train"
    source_groups: list[GroupName] = Field(default_factory=lambda: ["g0"])
    target: TargetDomain = Field(default_factory=TargetDomain)
    rounds: Annotated[int, Field(ge=1, le=100)] = 3
    steps: Annotated[int, Field(ge=1, le=10_000_000)] = 400
    warmup_steps: Annotated[int, Field(ge=0)] = 20
    backbone_lr_scale: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    target_batch: Annotated[int, Field(ge=2, le=65_536)] = 32
    pseudo_weight: Annotated[float, Field(ge=0.0, le=100.0)] = 1.0
    mi_weight: Annotated[float, Field(ge=0.0, le=100.0)] = 0.1
    mi_scale: Annotated[float, Field(gt=0.0, le=1024.0)] = 16.0
    mi_warmup: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    mi_full: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2
    maxcount: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    gabn: GabnParams = Field(default_factory=GabnParams)

    @model_validator(mode="after")
    def _domains_apart(self) -> "AdaptParams":
        if self.mi_full < self.mi_warmup:
            raise ValueError(f"adapt.mi_full ({self.mi_full}) must be >= adapt.mi_warmup ({self.mi_warmup})")
        if self.target.split == "train" and self.target.source in {s.name for s in self.sources}:
            overlap = sorted(set(self.source_groups) & set(self.target.groups))
            if not self.source_groups or not self.target.groups or overlap:
                raise ValueError(
                    f"adapt.target reads the train split of source {self.target.source!r}, which is also labelled "
                    f"source data: adapt.source_groups ({self.source_groups}) and adapt.target.groups "
                    f"({self.target.groups}) must both be non-empty and disjoint (overlap: {overlap})"
                )
        return self
