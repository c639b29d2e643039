"""Scan one raw source into manifest rows and quarantine rows: the assembly of the ingest manifest.

Every file under the source root ends up in exactly one place: an accepted manifest row or a
quarantine row with a reason. Nothing is dropped silently, so ``counts["accepted"]`` plus the
quarantine counts always equals ``counts["seen"]``. ``seen`` counts the files found plus the annotation
entries whose file does not exist (``missing_file``).

The order of the work: walk the files (`faceops.ingest.files`), read the layout's labels
(:data:`LAYOUTS`), apply the path-level rules, then read, decode and hash only the labelled, present
files. Files that a path-level rule already quarantined (``unlabeled``, ``no_identity``, ``bad_label``
...) are not decoded. Exact duplicates: the first by path is kept, later ones are quarantined as
``duplicate``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from faceops.config import SOURCE_NAME_PATTERN
from faceops.ingest.coco import read_coco
from faceops.ingest.files import Decoded, Refused, inspect_file, walk
from faceops.ingest.heat import HEAT_OWN_FILES, read_heat
from faceops.ingest.labels_csv import read_labels_csv
from faceops.ingest.layouts import Annotations, read_imagefolder, read_unlabeled
from faceops.io.images import REJECT_REASONS
from faceops.io.layout import COCO_ANNOTATIONS, LABELS_CSV
from faceops.labels import sample_id

__all__ = ["LAYOUTS", "QUARANTINE_REASONS", "IngestResult", "SourceFormat", "scan_source"]

SourceFormat = Literal["imagefolder", "unlabeled", "labels_csv", "coco_keypoints", "heat_planar"]

#: Every quarantine reason this stage can give (``counts`` holds each, zeros included).
QUARANTINE_REASONS: tuple[str, ...] = (
    *REJECT_REASONS,
    "unreadable",
    "bad_filename",
    "outside_root",
    "symlink_dir",
    "no_identity",
    "unlabeled",
    "missing_file",
    "bad_label",
    "duplicate",
)

#: The layout reader of each ``fmt`` and the annotation files or folders it owns (excluded from the scan).
LAYOUTS: dict[str, tuple[Callable[[Path, list[str]], Annotations], tuple[str, ...]]] = {
    "imagefolder": (read_imagefolder, ()),
    "unlabeled": (read_unlabeled, ()),
    "labels_csv": (read_labels_csv, (LABELS_CSV,)),
    "coco_keypoints": (read_coco, (COCO_ANNOTATIONS,)),
    "heat_planar": (read_heat, HEAT_OWN_FILES),
}


@dataclass(frozen=True)
class IngestResult:
    """Outcome of :func:`scan_source`.

    Attributes:
        rows: accepted manifest rows, sorted by ``id``.
        quarantine: quarantine rows, sorted by ``path``.
        counts: ``seen``, ``accepted`` and one count per entry of :data:`QUARANTINE_REASONS`.
    """

    rows: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]
    counts: dict[str, int]


def scan_source(
    root: Path,
    source: str,
    fmt: SourceFormat,
    *,
    max_pixels: int,
    max_file_bytes: int,
    min_side: int,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> IngestResult:
    """Validate, decode and hash every file of one source; label the good ones, quarantine the rest.

    Args:
        root: the source root (``data/raw/<source>``).
        source: source name (``[a-z0-9_]+``), prefix of every sample id.
        fmt: the layout (see `faceops.ingest`).
        max_pixels: largest accepted width * height.
        max_file_bytes: largest accepted file size.
        min_side: smallest accepted image side.
        progress: called with the number of entries just finished (tqdm ``update`` style); the
            calls add up to ``counts["seen"]``.
        workers: decoding threads (Pillow releases the GIL while decoding). The result does not
            depend on it.

    Returns:
        Rows sorted by id, quarantine rows sorted by path, and counts.

    Raises:
        ValueError: bad ``source``/``fmt``/``workers``, or an annotation file that cannot be used as
            a whole (unknown column, malformed JSON, a path listed twice ...).
        FileNotFoundError: ``root`` or the layout's annotation file does not exist.
    """
    if not re.fullmatch(SOURCE_NAME_PATTERN, source):
        raise ValueError(f"source name {source!r} must match {SOURCE_NAME_PATTERN} (it prefixes sample ids)")
    if fmt not in LAYOUTS:
        raise ValueError(f"unknown source format {fmt!r}; allowed: {sorted(LAYOUTS)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"source root {root} is not a directory; put the source under it or fix the path")
    read_layout, annotation_files = LAYOUTS[fmt]
    files, refused_on_walk = walk(root, skip=annotation_files)
    annotations = read_layout(root, files)
    refused, to_decode = _refuse_before_decoding(files, refused_on_walk, annotations)
    seen = len(set(files) | refused.keys())
    if progress is not None and refused:
        progress(len(refused))

    def inspect(path: str) -> Decoded | Refused:
        return inspect_file(root / path, max_pixels=max_pixels, max_file_bytes=max_file_bytes, min_side=min_side)

    rows: list[dict[str, Any]] = []
    kept_by_hash: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, outcome in zip(to_decode, pool.map(inspect, to_decode)):
            if progress is not None:
                progress(1)
            labels = annotations.labels[path]
            if isinstance(outcome, Decoded):
                mismatch = annotations.check_size(path, labels, outcome.width, outcome.height)
                if mismatch is not None:
                    outcome = Refused("bad_label", mismatch)
                elif outcome.sha256 in kept_by_hash:
                    outcome = Refused("duplicate", f"same bytes as {kept_by_hash[outcome.sha256]} (kept)")
            if isinstance(outcome, Refused):
                refused[path] = outcome
                continue
            kept_by_hash[outcome.sha256] = path
            rows.append(
                {
                    "id": sample_id(source, path),
                    "source": source,
                    "path": path,
                    "sha256": outcome.sha256,
                    "width": outcome.width,
                    "height": outcome.height,
                    "labels": labels,
                }
            )
    rows.sort(key=lambda row: row["id"])
    quarantine = [_quarantine_row(source, path, refused[path]) for path in sorted(refused)]
    return IngestResult(rows=rows, quarantine=quarantine, counts=_counts(rows, quarantine, seen))


def _refuse_before_decoding(
    files: list[str], refused_on_walk: dict[str, Refused], annotations: Annotations
) -> tuple[dict[str, Refused], list[str]]:
    """Apply the path-level rules, so only labelled, present files get decoded.

    Returns:
        Every entry refused so far (walk refusals, the layout's refusals, annotation entries without a
        file, unlabelled files) by path, and the files to decode, in sorted path order (the order that
        decides which duplicate is kept).
    """
    refused = dict(refused_on_walk)
    for path in (annotations.labels.keys() | annotations.refused.keys()) - set(files) - refused.keys():
        said = annotations.refused.get(path)
        if said is None or said.reason != "outside_root":
            said = Refused("missing_file", f"listed in {annotations.origin} but no such file under the source root")
        refused[path] = said
    to_decode = []
    for path in files:
        if path in annotations.refused:
            refused[path] = annotations.refused[path]
        elif path in annotations.labels:
            to_decode.append(path)
        else:
            refused[path] = Refused("unlabeled", f"not listed in {annotations.origin}; list it there or remove it")
    return refused, to_decode


def _counts(rows: list[dict[str, Any]], quarantine: list[dict[str, Any]], seen: int) -> dict[str, int]:
    counts = {"seen": seen, "accepted": len(rows), **dict.fromkeys(QUARANTINE_REASONS, 0)}
    for row in quarantine:
        counts[row["reason"]] += 1
    if counts["accepted"] + len(quarantine) != seen:
        raise RuntimeError(f"ingest lost track of files: accepted + quarantined != seen in {counts}")
    return counts


def _quarantine_row(source: str, path: str, refused: Refused) -> dict[str, Any]:
    return {"source": source, "path": path, "stage": "ingest", "reason": refused.reason, "detail": refused.detail}
