"""Importing an insightface RecordIO set as a raw source that flows through ingest and align unchanged."""

from __future__ import annotations

import cv2
import numpy as np

from faceops.align import align_face
from faceops.ingest import scan_source
from faceops.io.insightface_import import write_recordio_source
from faceops.io.recordio import write_recordio


def _face(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8), (7, 7), 2)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def test_recordio_becomes_a_labels_csv_source_that_aligns_to_itself(tmp_path):
    faces = [_face(i) for i in range(5)]
    labels = [0.0, 0.0, 1.0, 1.0, 2.0]
    records = [(0, [6.0, 9.0], b"")] + [(k + 1, labels[k], faces[k]) for k in range(5)]
    records += [(6 + c, [1.0 + 2 * c, 3.0 + 2 * c], b"") for c in range(3)]  # identity records, skipped
    write_recordio(tmp_path / "train.rec", tmp_path / "train.idx", records)
    out = tmp_path / "raw"
    assert write_recordio_source(tmp_path / "train.rec", tmp_path / "train.idx", out) == 5
    result = scan_source(out, "ms1m", "labels_csv", max_pixels=10**7, max_file_bytes=10**7, min_side=8)
    assert result.counts["accepted"] == 5
    assert sorted(r["labels"]["identity"] for r in result.rows) == ["0", "0", "1", "1", "2"]
    row = result.rows[0]
    image = cv2.cvtColor(cv2.imread(str(out / row["path"])), cv2.COLOR_BGR2RGB)
    aligned = align_face(image, np.asarray(row["labels"]["landmarks"]), size=112)
    assert np.abs(aligned.astype(int) - image.astype(int)).mean() < 1.0
