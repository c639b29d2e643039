"""Copy shard samples under new labels (pseudo-identities), so training reads them like real ones.

Why a copy and not a side table: every training path (``faceops.data``, ``MixedBatches``) reads labels
from the shard's ``json``; a shard set whose ``identity`` is the pseudo-label, with the clustering
confidence beside it, plugs into any stage that takes a shard source, with no special case.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from faceops.io.shards import ShardInfo, ShardSample, iter_tar_samples, write_shards

__all__ = ["relabel_samples", "write_relabelled_shards"]


def relabel_samples(shards: Iterable[Path], updates: Mapping[str, Mapping[str, Any]]) -> Iterator[ShardSample]:
    """Samples of ``shards`` whose key is in ``updates``, with their ``json`` updated by it, sorted by key.

    Args:
        shards: shard files to read (checked reader: unsafe or truncated shards raise ``ShardError``).
        updates: sample id -> label values to set (e.g. ``{"identity": "c00012", "pseudo_confidence": 0.93}``).

    Raises:
        KeyError: an id in ``updates`` is in none of the shards (the message names up to five).
    """
    found: dict[str, ShardSample] = {}
    for shard in shards:
        for sample in iter_tar_samples(shard):
            key = sample["__key__"]
            if key in updates:
                meta = {**orjson.loads(sample["json"]), **updates[key]}
                found[key] = ShardSample(key=key, jpg=sample["jpg"], meta=meta)
    missing = sorted(set(updates) - set(found))
    if missing:
        raise KeyError(f"{len(missing)} relabelled ids are in none of the shards, e.g. {missing[:5]}")
    return (found[key] for key in sorted(found))


def write_relabelled_shards(
    shards: Iterable[Path], updates: Mapping[str, Mapping[str, Any]], out_dir: Path, *, split: str, maxcount: int
) -> list[ShardInfo]:
    """``relabel_samples`` written as a new split of shards in ``out_dir`` (same byte-stable format)."""
    return write_shards(relabel_samples(shards, updates), out_dir, split=split, maxcount=maxcount)
