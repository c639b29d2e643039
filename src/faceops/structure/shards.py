"""A structure source (HEAT's layout) into WebDataset shards: ingest, resize, split, write (``structure-shard``).

The source goes through the project's ingest (``faceops.ingest.scan_source``, layout ``heat_planar``: every
file accepted or quarantined with a reason), then each image is brought to ``image_size`` square (corners
scaled with the pixel grid; the original bytes are kept when the image is a JPEG of that size already) and
written with ``faceops.io.shards`` like the face shards: key = sample id, ``jpg`` = image, ``json`` = labels
``corners``, ``edges``, ``regions`` (``faceops.structure.graph.graph_to_labels``), ``width``, ``height``,
``id``, ``source``. The split is HEAT's list's when it names one, else a hash of the id
(``faceops.data.split.assign_split``), so an image never changes split when others arrive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceops.data.split import assign_split
from faceops.ingest import scan_source
from faceops.io.images import decode_image, read_image_bytes
from faceops.io.shards import ShardSample, write_index, write_shards
from faceops.structure.graph import graph_from_labels, graph_to_labels, make_graph

__all__ = ["structure_sample", "write_structure_shards"]

_JPEG_MAGIC = b"\xff\xd8\xff"


def structure_sample(row: Mapping[str, Any], data: bytes, *, image_size: int, jpeg_quality: int,
                     max_pixels: int) -> ShardSample:  # fmt: skip
    """One ingested image (manifest ``row`` with ``corners``/``edges`` labels, its file ``data``) as a shard sample."""
    pixels = decode_image(data, max_pixels=max_pixels)  # [H, W, 3] RGB
    height, width = pixels.shape[:2]
    graph = graph_from_labels(row["labels"])
    if (height, width) == (image_size, image_size) and data.startswith(_JPEG_MAGIC):
        jpeg = data
    else:
        resized = cv2.resize(pixels, (image_size, image_size), interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".jpg", resized[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise ValueError(f"{row['id']}: JPEG encoding of the {image_size}px image failed")
        jpeg = encoded.tobytes()
        scale = np.array([image_size / width, image_size / height])
        graph = make_graph((graph.corners + 0.5) * scale - 0.5, graph.edges)  # pixel centres stay centres
    meta = {
        **graph_to_labels(graph),
        "width": image_size,
        "height": image_size,
        "id": row["id"],
        "source": row["source"],
    }
    return ShardSample(key=row["id"], jpg=jpeg, meta=meta)


def write_structure_shards(
    root: Path, source: str, out_dir: Path, *, image_size: int, fractions: Mapping[str, float], maxcount: int,
    jpeg_quality: int, max_pixels: int, max_file_bytes: int, min_side: int,
) -> tuple[dict[str, int], list[dict[str, Any]]]:  # fmt: skip
    """Ingest the source at ``root`` and write its shards + ``index.json`` into ``out_dir`` (module docstring).

    Returns:
        Counts (ingest's ``seen``/``accepted``/reasons and ``<split>/samples``) and the quarantine rows.

    Raises:
        FileNotFoundError: ``root`` is missing.
        ValueError: a label or image problem ingest could not see (naming the sample).
    """
    result = scan_source(root, source, "heat_planar", max_pixels=max_pixels, max_file_bytes=max_file_bytes,
                         min_side=min_side)  # fmt: skip
    by_split: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in result.rows:
        by_split[row["labels"].get("split") or assign_split(row["id"], fractions)].append(row)
    index: dict[str, Any] = {"format": 1, "source": source, "samples": len(result.rows), "splits": {}}
    counts = dict(result.counts)
    for split in sorted(by_split):
        rows = by_split[split]
        samples = (structure_sample(r, read_image_bytes(root / r["path"], max_bytes=max_file_bytes),
                                    image_size=image_size, jpeg_quality=jpeg_quality, max_pixels=max_pixels)
                   for r in rows)  # fmt: skip
        infos = write_shards(samples, out_dir, split=split, maxcount=maxcount)
        index["splits"][split] = {"shards": [i.name for i in infos], "samples": len(rows), "identities": 0}
        counts[f"{split}/samples"] = len(rows)
    write_index(out_dir, index)
    return counts, result.quarantine
