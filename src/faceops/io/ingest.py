"""Scan one raw source into manifest rows and quarantine rows (the library half of stage ``ingest``).

Every file under the source root ends up in exactly one place: an accepted manifest row or a
quarantine row with a reason. Nothing is dropped silently, so ``counts["accepted"]`` plus the
quarantine counts always equals ``counts["seen"]``.

**What is scanned.** Every file under ``root``, walked in sorted order, except hidden names (a
leading dot, files and folders: ``.git``, ``.DS_Store``, ``.dvc`` ...) and the layout's own
annotation file at the top. A symlink whose target lies outside ``root`` is refused
(``outside_root``); a symlink to a folder inside ``root`` is not followed (``symlink_dir``: its
target is scanned where it really is). ``seen`` counts the files found plus the annotation entries
whose file does not exist (``missing_file``).

**Layouts** (``fmt``); the labels of a row always hold every key its layout provides, ``None`` when
unknown:

* ``imagefolder``: ``root/<identity>/<file>`` (deeper folders allowed; the identity is the first
  folder). Labels: ``identity``. A file directly under ``root`` is quarantined as ``no_identity``,
  because an identity-less image would join the identity-based splits by accident.
* ``unlabeled``: every image file anywhere under ``root``, labels ``{"identity": None}``. For photos
  that arrive without any annotation (an inbox drop, a new domain): they go to the ``unlabeled``
  shard split, where ``embed``/``cluster`` give them pseudo-identities and ``keypoints`` landmarks.
* ``labels_csv``: ``root/labels.csv`` with a ``path`` column (POSIX, relative to ``root``) and any of
  ``identity``, ``expression`` (index or name from ``EXPRESSIONS``), ``age`` (years, 0..150), ``group``,
  the 40 ``CELEBA_ATTRIBUTES`` (0/1; CelebA's -1 reads as 0) and the landmark columns ``lx1, ly1 ..
  lx5, ly5`` (all ten or none, order ``LANDMARK_NAMES``). An empty cell is ``None``. Labels: ``identity``
  plus one key per column present (the ten landmark columns become ``landmarks``, [5, 2]). Landmarks
  are in the coordinates of the image *as displayed*, i.e. after its EXIF orientation is applied, and
  must lie inside it. An unknown column is an error (``ValueError``); a bad value quarantines the row
  (``bad_label``); a file on disk that the CSV does not list is ``unlabeled``.
* ``coco_keypoints``: ``root/annotations.json`` in COCO person-keypoints form, images at
  ``root/<file_name>``. One row per image, labels ``identity`` (always ``None``: COCO has none),
  ``persons``: every non-crowd annotation as ``{"bbox": [x, y, w, h], "keypoints": [[x, y, v], ...]}``,
  largest bbox first; and ``keypoints``: the [J, 3] keypoints of the largest person with at least one
  labelled point (``v > 0``), else ``None``. The image's declared width/height must match the decoded,
  EXIF-transposed image (``bad_label`` otherwise: its annotations would not fit the pixels).

**Per file**: read (refused over ``max_file_bytes`` before reading), fully decoded by
:func:`faceops.io.images.decode_image` (its reasons become quarantine reasons), hashed with sha256.
Exact duplicates: the first by path is kept, later ones are quarantined as ``duplicate``. Files that
a path-level rule already quarantined (``unlabeled``, ``no_identity``, ``bad_label`` ...) are not decoded.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import os
import posixpath
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from faceops.config import SOURCE_NAME_PATTERN
from faceops.io.images import REJECT_REASONS, ImageRejected, decode_image, read_image_bytes, sha256_bytes
from faceops.io.layout import COCO_ANNOTATIONS, LABELS_CSV
from faceops.labels import CELEBA_ATTRIBUTES, EXPRESSIONS, LANDMARK_COLUMNS, sample_id

__all__ = ["SourceFormat", "QUARANTINE_REASONS", "IngestResult", "scan_source"]

SourceFormat = Literal["imagefolder", "unlabeled", "labels_csv", "coco_keypoints"]

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

Labels = dict[str, Any]
# (relpath, labels, width, height) -> None when the labels fit the decoded image, else a detail.
SizeCheck = Callable[[str, Labels, int, int], str | None]

_CSV_LABEL_COLUMNS: tuple[str, ...] = ("identity", "expression", "age", "group", *CELEBA_ATTRIBUTES, *LANDMARK_COLUMNS)
_MAX_AGE = 150.0


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


@dataclass(frozen=True)
class _Decoded:
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class _Refused:
    reason: str
    detail: str


def _no_size_check(relpath: str, labels: Labels, width: int, height: int) -> str | None:
    return None


@dataclass
class _Annotations:
    """What a layout says about the files: labels to keep, and paths refused before decoding."""

    origin: str  # where labels come from, for messages
    labels: dict[str, Labels] = field(default_factory=dict)
    refused: dict[str, _Refused] = field(default_factory=dict)
    check_size: SizeCheck = _no_size_check


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
        fmt: the layout (see the module docstring).
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
    if fmt not in _LAYOUTS:
        raise ValueError(f"unknown source format {fmt!r}; allowed: {sorted(_LAYOUTS)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"source root {root} is not a directory; put the source under it or fix the path")
    read_layout, annotation_file = _LAYOUTS[fmt]
    files, refused_on_walk = _walk(root, skip=annotation_file)
    annotations = read_layout(root, files)
    refused, to_decode = _refuse_before_decoding(files, refused_on_walk, annotations)
    seen = len(set(files) | refused.keys())
    if progress is not None and refused:
        progress(len(refused))

    def inspect(path: str) -> _Decoded | _Refused:
        return _inspect(root / path, max_pixels=max_pixels, max_file_bytes=max_file_bytes, min_side=min_side)

    rows: list[dict[str, Any]] = []
    kept_by_hash: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, outcome in zip(to_decode, pool.map(inspect, to_decode)):
            if progress is not None:
                progress(1)
            labels = annotations.labels[path]
            if isinstance(outcome, _Decoded):
                mismatch = annotations.check_size(path, labels, outcome.width, outcome.height)
                if mismatch is not None:
                    outcome = _Refused("bad_label", mismatch)
                elif outcome.sha256 in kept_by_hash:
                    outcome = _Refused("duplicate", f"same bytes as {kept_by_hash[outcome.sha256]} (kept)")
            if isinstance(outcome, _Refused):
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
    files: list[str], refused_on_walk: dict[str, _Refused], annotations: _Annotations
) -> tuple[dict[str, _Refused], list[str]]:
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
            said = _Refused("missing_file", f"listed in {annotations.origin} but no such file under the source root")
        refused[path] = said
    to_decode = []
    for path in files:
        if path in annotations.refused:
            refused[path] = annotations.refused[path]
        elif path in annotations.labels:
            to_decode.append(path)
        else:
            refused[path] = _Refused("unlabeled", f"not listed in {annotations.origin}; list it there or remove it")
    return refused, to_decode


def _counts(rows: list[dict[str, Any]], quarantine: list[dict[str, Any]], seen: int) -> dict[str, int]:
    counts = {"seen": seen, "accepted": len(rows), **dict.fromkeys(QUARANTINE_REASONS, 0)}
    for row in quarantine:
        counts[row["reason"]] += 1
    if counts["accepted"] + len(quarantine) != seen:
        raise RuntimeError(f"ingest lost track of files: accepted + quarantined != seen in {counts}")
    return counts


def _quarantine_row(source: str, path: str, refused: _Refused) -> dict[str, Any]:
    return {"source": source, "path": path, "stage": "ingest", "reason": refused.reason, "detail": refused.detail}


def _inspect(path: Path, *, max_pixels: int, max_file_bytes: int, min_side: int) -> _Decoded | _Refused:
    """Read, fully decode and hash one file (runs in a worker thread)."""
    try:
        data = read_image_bytes(path, max_bytes=max_file_bytes)
        pixels = decode_image(data, max_pixels=max_pixels, min_side=min_side)  # [H, W, 3]
    except ImageRejected as rejected:
        return _Refused(rejected.reason, rejected.detail)
    except OSError as err:
        return _Refused("unreadable", f"cannot read the file: {err}")
    except Exception as err:
        err.add_note(f"while ingesting {path}")
        raise
    return _Decoded(sha256=sha256_bytes(data), width=int(pixels.shape[1]), height=int(pixels.shape[0]))


# --------------------------------------------------------------------------------------- walking


def _walk(root: Path, *, skip: str | None) -> tuple[list[str], dict[str, _Refused]]:
    """Sorted POSIX relpaths of the regular files under ``root``, and the entries refused on the way."""
    real_root = root.resolve()
    files: list[str] = []
    refused: dict[str, _Refused] = {}

    def visit(directory: Path, prefix: str) -> None:
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                relpath = prefix + entry.name
                if entry.name.startswith(".") or relpath == skip:
                    continue
                if not _is_utf8(relpath):
                    shown = relpath.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                    refused[shown] = _Refused("bad_filename", "name is not valid UTF-8 (a folder is not entered)")
                elif entry.is_symlink():
                    # Details name the link text, not the resolved absolute path: same bytes on every machine.
                    link, target = os.readlink(entry.path), Path(entry.path).resolve()
                    if not target.is_relative_to(real_root):
                        refused[relpath] = _Refused("outside_root", f"symlink to {link!r}, outside the source root")
                    elif target.is_dir():
                        refused[relpath] = _Refused(
                            "symlink_dir", f"symlink to folder {link!r}; folder links are not followed"
                        )
                    elif target.is_file():
                        files.append(relpath)
                    else:
                        refused[relpath] = _Refused("unreadable", f"broken symlink to {link!r}")
                elif entry.is_dir(follow_symlinks=False):
                    visit(Path(entry.path), relpath + "/")
                elif entry.is_file(follow_symlinks=False):
                    files.append(relpath)
                else:
                    refused[relpath] = _Refused("unreadable", "not a regular file (device, socket or pipe)")

    visit(root, "")
    return sorted(files), refused


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _normalise_relpath(raw: str) -> str | None:
    """POSIX relpath as listed in an annotation file, normalised; ``None`` when it leaves the root."""
    norm = posixpath.normpath(raw)
    if raw.startswith("/") or norm in (".", "..") or norm.startswith("../"):
        return None
    return norm


def _outside(raw: str, origin: str) -> _Refused:
    return _Refused("outside_root", f"{origin} lists {raw!r}, which is not inside the source root")


# --------------------------------------------------------------------------------------- layouts


def _read_imagefolder(root: Path, files: list[str]) -> _Annotations:
    annotations = _Annotations(origin="the imagefolder layout")
    for path in files:
        identity, sep, _ = path.partition("/")
        if sep:
            annotations.labels[path] = {"identity": identity}
        else:
            annotations.refused[path] = _Refused(
                "no_identity", "file lies directly under the source root; imagefolder expects <identity>/<file>"
            )
    return annotations


def _read_unlabeled(root: Path, files: list[str]) -> _Annotations:
    annotations = _Annotations(origin="the unlabeled layout")
    annotations.labels.update({path: {"identity": None} for path in files})
    return annotations


def _read_labels_csv(root: Path, files: list[str]) -> _Annotations:
    csv_path = root / LABELS_CSV
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found; the labels_csv layout needs it, with a 'path' column")
    annotations = _Annotations(origin=LABELS_CSV, check_size=_landmarks_inside)
    with open(csv_path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        columns = [name.strip() for name in next(reader, [])]
        _check_csv_columns(columns, csv_path)
        first_line: dict[str, int] = {}
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            where = f"{LABELS_CSV} line {reader.line_num}"
            if len(cells) != len(columns):
                raise ValueError(
                    f"{csv_path}: line {reader.line_num} has {len(cells)} fields, the header has {len(columns)}"
                )
            row = {name: cell.strip() for name, cell in zip(columns, cells)}
            raw = row["path"]
            if not raw:
                raise ValueError(f"{csv_path}: line {reader.line_num} has an empty 'path'")
            path = _normalise_relpath(raw)
            key = raw if path is None else path
            if key in first_line:
                raise ValueError(
                    f"{csv_path}: line {reader.line_num} lists {raw!r} again (first on line {first_line[key]}); "
                    "list each file once"
                )
            first_line[key] = reader.line_num
            if path is None:
                annotations.refused[raw] = _outside(raw, where)
                continue
            try:
                annotations.labels[path] = _parse_csv_labels(row)
            except ValueError as err:
                annotations.refused[path] = _Refused("bad_label", f"{where}: {err}")
    return annotations


def _check_csv_columns(columns: list[str], csv_path: Path) -> None:
    if "path" not in columns:
        raise ValueError(f"{csv_path}: no 'path' column in header {columns}; add one (file path relative to the root)")
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise ValueError(f"{csv_path}: repeated column(s) {repeated}; keep one of each")
    allowed = ("path", *_CSV_LABEL_COLUMNS)
    unknown = [name for name in columns if name not in allowed]
    if unknown:
        hints = {name: difflib.get_close_matches(name, allowed, n=1) for name in unknown}
        hint = "; ".join(f"{name!r}: did you mean {m[0]!r}?" for name, m in hints.items() if m)
        raise ValueError(
            f"{csv_path}: unknown column(s) {unknown}. Allowed: path, identity, expression, age, group, the 40 CelebA "
            f"attributes ({', '.join(CELEBA_ATTRIBUTES)}) and landmarks {', '.join(LANDMARK_COLUMNS)}. "
            f"Rename or remove them.{' ' + hint if hint else ''}"
        )
    present = [name for name in LANDMARK_COLUMNS if name in columns]
    if present and len(present) != len(LANDMARK_COLUMNS):
        missing = [name for name in LANDMARK_COLUMNS if name not in columns]
        raise ValueError(f"{csv_path}: landmark columns need all ten of lx1..ly5 or none; missing {missing}")


def _parse_csv_labels(row: dict[str, str]) -> Labels:
    """Labels of one CSV row; raises ValueError naming the bad value and what is allowed."""
    labels: Labels = {"identity": row.get("identity") or None}
    for name, value in row.items():
        if name in ("path", "identity") or name in LANDMARK_COLUMNS:
            continue
        labels[name] = None if value == "" else _CSV_PARSERS[name](value, name)
    if LANDMARK_COLUMNS[0] in row:
        labels["landmarks"] = _parse_landmarks([row[name] for name in LANDMARK_COLUMNS])
    return labels


def _parse_expression(value: str, name: str) -> int:
    if re.fullmatch(r"[+-]?\d+", value):
        index = int(value)
        if 0 <= index < len(EXPRESSIONS):
            return index
    elif value.lower() in EXPRESSIONS:
        return EXPRESSIONS.index(value.lower())
    raise ValueError(f"{name} {value!r} is neither an index 0..{len(EXPRESSIONS) - 1} nor one of {list(EXPRESSIONS)}")


def _parse_age(value: str, name: str) -> float:
    age = _parse_float(value, name)
    if not 0.0 <= age <= _MAX_AGE:
        raise ValueError(f"{name} {value!r} is outside [0, {_MAX_AGE:g}] years")
    return age


def _parse_group(value: str, name: str) -> str:
    return value


def _parse_binary(value: str, name: str) -> int:
    if value in ("1", "0", "-1"):
        return 1 if value == "1" else 0
    raise ValueError(f"attribute {name} {value!r} must be 1, 0 or -1 (CelebA style, read as 0)")


def _parse_float(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{name} {value!r} is not a finite number")
    return number


def _parse_landmarks(cells: list[str]) -> list[list[float]] | None:
    """Ten cells lx1, ly1, ..., lx5, ly5 -> [5, 2] (x, y), or None when all are empty."""
    if all(cell == "" for cell in cells):
        return None
    empty = [name for name, cell in zip(LANDMARK_COLUMNS, cells) if cell == ""]
    if empty:
        raise ValueError(f"landmarks need all ten values or none; empty: {empty}")
    values = [_parse_float(cell, name) for name, cell in zip(LANDMARK_COLUMNS, cells)]
    return [values[i : i + 2] for i in range(0, len(values), 2)]


_CSV_PARSERS: dict[str, Callable[[str, str], Any]] = {
    **dict.fromkeys(CELEBA_ATTRIBUTES, _parse_binary),
    "expression": _parse_expression,
    "age": _parse_age,
    "group": _parse_group,
}


def _landmarks_inside(path: str, labels: Labels, width: int, height: int) -> str | None:
    landmarks = labels.get("landmarks")
    if landmarks is None:
        return None
    outside = [(x, y) for x, y in landmarks if not (0.0 <= x <= width and 0.0 <= y <= height)]
    if outside:
        return (
            f"landmarks {outside} lie outside the {width}x{height} image; they must be in the coordinates of "
            "the displayed (EXIF-rotated) image"
        )
    return None


def _read_coco(root: Path, files: list[str]) -> _Annotations:
    json_path = root / COCO_ANNOTATIONS
    if not json_path.is_file():
        raise FileNotFoundError(f"{json_path} not found; the coco_keypoints layout needs it (COCO person keypoints)")
    try:
        coco = json.loads(json_path.read_text(encoding="utf-8"))
        images, annotations_in = coco["images"], coco.get("annotations", [])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{json_path}: not a COCO annotation file with an 'images' list ({err})") from err
    declared: dict[str, tuple[int, int]] = {}

    def size_matches(path: str, labels: Labels, width: int, height: int) -> str | None:
        if declared[path] == (width, height):
            return None
        want_w, want_h = declared[path]
        return f"{COCO_ANNOTATIONS} declares {want_w}x{want_h}, the decoded image is {width}x{height}"

    result = _Annotations(origin=COCO_ANNOTATIONS, check_size=size_matches)
    path_of: dict[Any, str | None] = {}
    for i, image in enumerate(images):
        try:
            image_id, raw = image["id"], str(image["file_name"])
            size = (int(image["width"]), int(image["height"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{json_path}: images[{i}] needs id, file_name, width and height ({err!r})") from err
        path = _normalise_relpath(raw)
        if image_id in path_of or (path or raw) in declared:
            raise ValueError(f"{json_path}: images[{i}] repeats id {image_id!r} or file_name {raw!r}; list each once")
        path_of[image_id] = path
        declared[path or raw] = size
        if path is None:
            result.refused[raw] = _outside(raw, COCO_ANNOTATIONS)
    persons: dict[Any, list[dict[str, Any]]] = {image_id: [] for image_id in path_of}
    for j, annotation in enumerate(annotations_in):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if image_id not in persons:
            raise ValueError(f"{json_path}: annotations[{j}] refers to image_id {image_id!r}, which is not in 'images'")
        if not annotation.get("iscrowd", 0):
            persons[image_id].append(annotation)
    for image_id, path in path_of.items():
        if path is None:
            continue
        try:
            result.labels[path] = _coco_labels(persons[image_id])
        except (KeyError, TypeError, ValueError) as err:
            result.refused[path] = _Refused("bad_label", f"{COCO_ANNOTATIONS} image id {image_id}: {err}")
    return result


def _coco_labels(annotations: list[dict[str, Any]]) -> Labels:
    """Labels of one COCO image from its non-crowd annotations (see the module docstring)."""
    persons = []
    for annotation in annotations:
        name = f"annotation {annotation.get('id')}"
        bbox = [float(v) for v in annotation["bbox"]]
        flat = annotation["keypoints"]
        if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0:
            raise ValueError(f"{name} has bbox {annotation['bbox']}; expected [x, y, w>=0, h>=0]")
        if not flat or len(flat) % 3:
            raise ValueError(f"{name} has {len(flat)} keypoint values; expected 3 per joint")
        keypoints = [[float(flat[k]), float(flat[k + 1]), int(flat[k + 2])] for k in range(0, len(flat), 3)]
        if any(v not in (0, 1, 2) for _, _, v in keypoints):
            raise ValueError(f"{name} has a visibility flag outside {{0, 1, 2}}")
        persons.append({"bbox": bbox, "keypoints": keypoints})
    persons.sort(key=lambda person: -person["bbox"][2] * person["bbox"][3])  # stable: file order breaks ties
    labelled = (person["keypoints"] for person in persons if any(v > 0 for _, _, v in person["keypoints"]))
    return {"identity": None, "keypoints": next(labelled, None), "persons": persons}


# The layout reader and the annotation file it owns (excluded from the scan).
_LAYOUTS: dict[str, tuple[Callable[[Path, list[str]], _Annotations], str | None]] = {
    "imagefolder": (_read_imagefolder, None),
    "unlabeled": (_read_unlabeled, None),
    "labels_csv": (_read_labels_csv, LABELS_CSV),
    "coco_keypoints": (_read_coco, COCO_ANNOTATIONS),
}
