"""A tiny shard source whose faces carry a skin-tone-like ``group``: the domains of AIN, the groups of GABN.

Each identity is a coloured disc (its colour is the identity) on a background whose brightness is its group's,
so groups differ in appearance the way a domain shift does, and identities stay separable.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from faceops.io.shards import ShardSample, write_index, write_shards
from faceops.labels import sample_id

#: Background grey level per group (g0 dark, g1 bright).
BACKGROUND = {"g0": 20, "g1": 150}
_PALETTE = [(230, 40, 40), (40, 230, 40), (40, 40, 230), (230, 230, 40), (230, 40, 230), (40, 230, 230)]


def _face(rng: np.random.Generator, colour: tuple[int, int, int], background: int) -> bytes:
    image = np.clip(rng.normal(background, 12, (112, 112, 3)), 0, 255).astype(np.uint8)
    cx, cy = (int(v) for v in rng.integers(40, 72, 2))
    cv2.circle(image, (cx, cy), 24, colour, -1)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def write_group_source(root: Path, source: str = "blobs", *, per_group: int = 3, per_identity: int = 6,
                       maxcount: int = 8, seed: int = 0) -> Path:  # fmt: skip
    """``root/<source>/`` with a ``train`` split: ``per_group`` identities in each of :data:`BACKGROUND`'s groups."""
    rng = np.random.default_rng(seed)
    samples = []
    for g, (group, background) in enumerate(BACKGROUND.items()):
        for i in range(per_group):
            identity = f"{group}_p{i}"
            for j in range(per_identity):
                key = sample_id(source, f"{identity}/{j}.jpg")
                meta = {"id": key, "source": source, "identity": identity, "group": group, "age": 30.0}
                samples.append(ShardSample(key, _face(rng, _PALETTE[(g * per_group + i) % len(_PALETTE)], background),
                                           meta))  # fmt: skip
    infos = write_shards(samples, root / source, split="train", maxcount=maxcount)
    write_index(root / source, {"format": 1, "source": source, "samples": len(samples),
                                "splits": {"train": {"shards": [i.name for i in infos], "samples": len(samples),
                                                     "identities": per_group * len(BACKGROUND)}}})  # fmt: skip
    return root / source
