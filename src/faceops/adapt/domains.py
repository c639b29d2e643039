"""Source and target domains as shard copies: the samples of some groups, and the target under pseudo-identities.

Why copies: every training path reads labels from a shard's ``json`` (``MixedBatches``, ``label_stats``), so a
domain is a shard set holding only its samples (``faceops.data.relabel``). The target copy a round trains on
replaces each face's ``identity`` by its pseudo-identity, or by ``null`` when the clustering left it out:
the target's own labels never reach training.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from faceops.data.relabel import write_relabelled_shards
from faceops.io.atomic import atomic_directory
from faceops.io.shards import iter_tar_samples

__all__ = ["select_by_group", "write_domain"]


def select_by_group(urls: Iterable[str | Path], groups: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Sample id -> label dict (shard ``json``) of the samples whose ``group`` is in ``groups`` (all when empty).

    Raises:
        ValueError: no sample of the shards is in ``groups`` (the message lists the groups present).
    """
    metas = {s["__key__"]: orjson.loads(s["json"]) for url in urls for s in iter_tar_samples(url)}
    wanted = set(groups)
    chosen = {key: meta for key, meta in metas.items() if not wanted or meta.get("group") in wanted}
    if not chosen:
        present = sorted({str(m.get("group")) for m in metas.values()})
        raise ValueError(f"no sample of the {len(metas)} in these shards has a group in {sorted(wanted)}; groups "
                         f"present: {present}")  # fmt: skip
    return chosen


def write_domain(
    urls: Sequence[Path], updates: Mapping[str, Mapping[str, Any]], out_dir: Path, *, maxcount: int
) -> list[Path]:
    """Copy the samples named in ``updates`` (each with its label changes, ``{}`` for none) to ``out_dir``'s
    ``train`` shards, replacing whatever ``out_dir`` held; returns their paths. The same inputs give the same
    bytes (``write_shards``), so a restarted run rewrites a copy identical to the one it left."""
    with atomic_directory(out_dir) as staging:
        infos = write_relabelled_shards(urls, updates, staging, split="train", maxcount=maxcount)
    return [out_dir / info.name for info in infos]
