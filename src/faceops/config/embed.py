"""Embedding extraction (section ``embed``, stage ``embed``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.runner import RunnerChoice

__all__ = ["EmbedParams"]


class EmbedParams(RunnerChoice):
    """Embedding extraction (stage ``embed``): L2-normalised float32 vectors per source and split.

    ``backend: swinface`` uses the model the ``train`` stage wrote. ``backend: dlib`` uses dlib's
    pretrained ResNet (128-d; extra ``.[dlib]``), so real photos can be clustered before any training
    here; ``batch_size`` is then faces per dlib batch. Splits are the shard splits (``unlabeled``
    holds a source's samples without identity).

    ``runner: dask`` (see ``RunnerChoice``) embeds one shard file per Dask task, on the workers' CPUs
    (one torch thread each; a local cluster has one process per CPU here). dlib's vectors are the same
    bytes either way; a trained model's agree to float rounding (its batches end at shard boundaries).
    """

    backend: Literal["swinface", "dlib"] = "swinface"
    sources: list[Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]] = Field(default_factory=lambda: ["sample"])
    splits: list[Literal["train", "val", "test", "unlabeled"]] = Field(default_factory=lambda: ["train", "test"])
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    num_workers: Annotated[int, Field(ge=0, le=64)] = 0
