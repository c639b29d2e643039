"""Pseudo-identities by clustering (section ``cluster``, stage ``cluster``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.core import Section

__all__ = ["EmbeddingRef", "ClusterParams"]


class EmbeddingRef(Section):
    """One embedded (source, split) pair written by ``embed``."""

    source: Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]
    split: Literal["train", "val", "test", "unlabeled"]


class ClusterParams(Section):
    """Pseudo-labels for an unlabeled target (stage ``cluster``), AIN's linkage-GCN recipe.

    The GCN learns "same identity?" for kNN edges on ``train_on`` (a labelled embedding set) and then
    clusters ``target``. In the demo the target is the sample's held-out test identities, clustered as
    if unlabeled; their hidden labels only score the result (metrics), never steer it.
    ``k1, k2, u``: the instance pivot subgraph (1-hop, 2-hop neighbours, active links); ``max_size``
    caps a pseudo-identity, and so does ``max_size_ratio`` times the face count of ``train_on``'s largest
    identity (a cluster bigger than any person seen is a merge; ``null``: ``max_size`` alone): every
    method's oversize clusters are split (``faceops.cluster.cap``, the GCN's inside its propagation);
    ``min_members``: smaller clusters stay out of the pseudo-label shards (a one-face class teaches nothing).
    A baseline ``method`` chooses its free parameter (threshold, distance, min cluster size) by pairwise F on
    ``train_on``; ``compare_baselines`` scores them all.
    ``method: auto`` (the default) takes the method with the best pairwise F on the calibration identities
    (below), each method with its own parameters tuned there, so the pseudo-labels come from the best method
    the stage measured; ``metrics/cluster.json`` names it (``method``) next to every method's calibration F.
    Without calibration identities ``auto`` uses the GCN.
    ``calibration_share`` of ``train_on``'s identities (by name hash) are kept out of GCN training and
    choose the propagation's ``min_score``, ``max_size`` (``max_size`` then caps the candidates), split
    step and edge-score merge (mean or max); 0 (or fewer than 2 identities on either side) trains on all
    of them and uses ``min_score``, ``max_size`` and ``split_step`` as given, with the mean merge.
    ``split_step``: how a component larger than ``max_size`` is split: its edge threshold rises by this
    fraction of the remaining gap to 1 per round (``faceops.cluster.propagate``; a slow rise such as 0.9
    peels small groups off a chained component, a fast one shatters it).
    """

    method: Literal["auto", "gcn", "threshold", "hdbscan", "agglomerative"] = "auto"
    train_on: EmbeddingRef = Field(default_factory=lambda: EmbeddingRef(source="sample", split="train"))
    target: EmbeddingRef = Field(default_factory=lambda: EmbeddingRef(source="sample", split="test"))
    k1: Annotated[int, Field(ge=1, le=1024)] = 10
    k2: Annotated[int, Field(ge=1, le=1024)] = 3
    u: Annotated[int, Field(ge=1, le=1024)] = 3
    epochs: Annotated[int, Field(ge=1, le=1000)] = 4
    max_size: Annotated[int, Field(ge=2)] = 300
    max_size_ratio: Annotated[float, Field(ge=1.0)] | None = 2.0
    min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    split_step: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.6
    min_members: Annotated[int, Field(ge=1)] = 2
    compare_baselines: bool = True
    calibration_share: Annotated[float, Field(ge=0.0, le=0.9)] = 0.3

    @model_validator(mode="after")
    def _hops_fit(self) -> "ClusterParams":
        if self.k2 > self.k1 or self.u > self.k1:
            raise ValueError(f"k2 ({self.k2}) and u ({self.u}) must be <= k1 ({self.k1})")
        return self
