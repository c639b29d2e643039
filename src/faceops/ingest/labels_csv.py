"""The ``labels_csv`` layout: labels of each file from ``root/labels.csv``.

``root/labels.csv`` has a ``path`` column (POSIX, relative to ``root``) and any of ``identity``,
``expression`` (index or name from ``EXPRESSIONS``), ``age`` (years, 0..150), ``group``, the 40
``CELEBA_ATTRIBUTES`` (0/1; CelebA's -1 reads as 0) and the landmark columns ``lx1, ly1 .. lx5, ly5``
(all ten or none, order ``LANDMARK_NAMES``). An empty cell is ``None``. Labels: ``identity`` plus one key
per column present (the ten landmark columns become ``landmarks``, [5, 2]). Landmarks are in the
coordinates of the image *as displayed*, i.e. after its EXIF orientation is applied, and must lie inside
it. An unknown column is an error (``ValueError``); a bad value quarantines the row (``bad_label``); a
file on disk that the CSV does not list is ``unlabeled``.
"""

from __future__ import annotations

import csv
import difflib
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faceops.ingest.files import Refused
from faceops.ingest.layouts import Annotations, Labels, normalise_relpath, outside_root
from faceops.io.layout import LABELS_CSV
from faceops.labels import CELEBA_ATTRIBUTES, EXPRESSIONS, LANDMARK_COLUMNS

__all__ = ["read_labels_csv"]

_CSV_LABEL_COLUMNS: tuple[str, ...] = ("identity", "expression", "age", "group", *CELEBA_ATTRIBUTES, *LANDMARK_COLUMNS)
_MAX_AGE = 150.0


def read_labels_csv(root: Path, files: list[str]) -> Annotations:
    """Labels of the ``labels_csv`` layout (see the module docstring); ``files`` is not needed here."""
    csv_path = root / LABELS_CSV
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found; the labels_csv layout needs it, with a 'path' column")
    annotations = Annotations(origin=LABELS_CSV, check_size=_landmarks_inside)
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
            path = normalise_relpath(raw)
            key = raw if path is None else path
            if key in first_line:
                raise ValueError(
                    f"{csv_path}: line {reader.line_num} lists {raw!r} again (first on line {first_line[key]}); "
                    "list each file once"
                )
            first_line[key] = reader.line_num
            if path is None:
                annotations.refused[raw] = outside_root(raw, where)
                continue
            try:
                annotations.labels[path] = _parse_csv_labels(row)
            except ValueError as err:
                annotations.refused[path] = Refused("bad_label", f"{where}: {err}")
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
