"""Turn an insightface RecordIO training set into a `labels_csv` raw source.

insightface's faces are already aligned to the ArcFace template, so every row is given the template
(scaled to the image size) as its landmarks: the `align` stage then applies a near-identity warp and the
imported set flows through ingest, align and shard like any other source, with nothing special-cased.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

from PIL import Image

from faceops.io.atomic import atomic_write_bytes, atomic_write_text
from faceops.io.layout import LABELS_CSV
from faceops.io.recordio import recordio_to_samples
from faceops.labels import ARCFACE_TEMPLATE_112, LANDMARK_COLUMNS

__all__ = ["write_recordio_source"]

_EXTENSIONS = {"JPEG": "jpg", "PNG": "png"}


def write_recordio_source(rec_path: str | Path, idx_path: str | Path, out_dir: str | Path) -> int:
    """Write ``images/<identity>/<n>.<ext>`` and ``labels.csv`` (path, identity, template landmarks).

    Args:
        rec_path, idx_path: the RecordIO pair (read with the bounds-checked reader, no mxnet).
        out_dir: an empty folder to fill.

    Returns:
        The number of images written.

    Raises:
        ValueError: an image that is neither JPEG nor PNG, or a corrupt record (from the reader).
    """
    out_dir = Path(out_dir)
    counters: dict[str, int] = defaultdict(int)
    rows: list[list[str]] = []
    for identity, data in recordio_to_samples(rec_path, idx_path):
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height) = image.format, image.size
        if fmt not in _EXTENSIONS:
            raise ValueError(f"record of identity {identity} holds a {fmt} image; expected JPEG or PNG")
        relpath = f"images/{identity}/{counters[identity]:06d}.{_EXTENSIONS[fmt]}"
        counters[identity] += 1
        (out_dir / relpath).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_dir / relpath, data)
        scale = (width / 112.0, height / 112.0)
        points = [f"{value * scale[k % 2]:.3f}" for k, value in enumerate(ARCFACE_TEMPLATE_112.reshape(-1))]
        rows.append([relpath, identity, *points])
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "identity", *LANDMARK_COLUMNS])
    writer.writerows(rows)
    atomic_write_text(out_dir / LABELS_CSV, text.getvalue())
    return len(rows)
