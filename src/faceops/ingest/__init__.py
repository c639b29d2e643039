"""Ingest: check every file of a raw source and turn it into manifest rows or quarantine rows (stage ``ingest``).

The stage calls :func:`scan_source` once per source (``data/raw/<source>``) and writes its rows.
Every file ends up in exactly one place, an accepted manifest row or a quarantine row with a reason
(:data:`QUARANTINE_REASONS`), and the counts add up to the files seen.

- `faceops.ingest.scan`: :func:`scan_source`, the assembly of rows, quarantine and counts;
- `faceops.ingest.files`: which files are scanned (hidden names, symlinks) and the read, decode and hash
  of one file;
- `faceops.ingest.layouts`: what a layout reader returns, and the ``imagefolder`` and ``unlabeled`` layouts;
- `faceops.ingest.labels_csv`: the ``labels_csv`` layout (identity, expression, age, group, CelebA
  attributes, five landmarks per image);
- `faceops.ingest.coco`: the ``coco_keypoints`` layout (COCO person keypoints).
- `faceops.ingest.heat`: the ``heat_planar`` layout (HEAT's planar-graph annotations: corners and edges).

Unlike the rest of the library, this package reads files itself: it walks the source folder and reads
its annotation file; image bytes are read and decoded by `faceops.io.images`.
"""

from faceops.ingest.scan import LAYOUTS, QUARANTINE_REASONS, IngestResult, SourceFormat, scan_source

__all__ = ["LAYOUTS", "QUARANTINE_REASONS", "IngestResult", "SourceFormat", "scan_source"]
