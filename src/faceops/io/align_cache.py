"""The per-image alignment cache: one file per cache key, a JSON record line followed by the JPEG.

Layout: ``<cache_dir>/<key[0]>/<key>.entry``; the key is the sha256 of a canonical JSON payload
(``cache_key``) holding everything that changes the result, so a re-run, or a run with a few new
photos, only computes what is new. Failures (no face, low score, ...) are entries too (with no JPEG),
so they are not recomputed either. An entry is ``<record JSON, one line>\\n<JPEG bytes>``.

Why one file, written in place without fsync: the cache is a speed-up, never the only copy of anything,
so what matters is that a bad entry is never *used*, not that a good one survives a power cut (an fsync
per entry measured ~0.4 ms, a quarter of aligning a 300-600 px photo). One file per entry halves the
file creations of a cold run (creating a JSON + JPEG pair cost more than encoding the JPEG). The entry
is written with one ``os.write`` straight to its name, not to a temporary sibling renamed into place:
the record names its key, the JPEG's length and sha256, and any entry that does not check out (a reader
catching a write half-way, a torn entry after a crash, a hand edit, a full disk) reads as a miss, gets
recomputed and overwritten, so the rename bought nothing the check does not already give, and cost
~40 us of the ~65 us of a cache write (``bench/align.py``). Two writers of one key write the same bytes
(the key holds everything that decides them).

Why 16 sub-folders (the key's first hex digit), not 256 (its first two, before): a cold run creates them
all, and creating a folder cost 320-450 us on the 2-core VM of ``bench/align.py``, ~8x a file, so 256
folders added ~100 us to every photo of a 1000-photo first run; at a million photos 16 folders hold ~65k
entries each, which ext4 and XFS index by hash. They are created on first use (when a write finds its
folder missing), not checked per entry. :func:`remove_superseded` deletes the two-digit folders of the
former layout, whose entries this layout never reads. Files not named ``<key>.entry`` (such as the
``.tmp`` files older versions left when killed) are never read; they, like the whole cache, can be
deleted at any time.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

__all__ = ["CACHE_FORMAT", "cache_key", "entry_path", "read_entry", "remove_superseded", "write_entry"]

#: Version of the entry layout below; part of every record, a mismatch reads as a miss.
CACHE_FORMAT = 2

_LANDMARK_SOURCES = ("given", "detected")
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
_FILE_MODE = 0o644
_HEX = frozenset("0123456789abcdef")


def cache_key(payload: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of ``payload``: orjson's (sorted keys, no spaces, floats in their
    shortest round-trip form), ~1.5 us where the standard library's took ~24 us per aligned image.

    Raises:
        ValueError: the payload holds NaN/inf (they have no canonical JSON form; orjson would write null).
    """
    text = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    if b"null" in text:  # where orjson writes NaN and inf: only then walk the payload to tell them from None
        _check_finite(payload)
    return hashlib.sha256(text).hexdigest()


def _check_finite(value: object) -> None:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cache key payloads must be finite, got {value}")
    elif isinstance(value, Mapping):
        for item in value.values():
            _check_finite(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_finite(item)


def entry_path(cache_dir: Path, key: str) -> Path:
    """The file of ``key``: ``<cache_dir>/<key[0]>/<key>.entry``."""
    return Path(_entry_file(cache_dir, key))


def _entry_file(cache_dir: Path | str, key: str) -> str:
    # A str, not a Path: this runs twice per image, and pathlib's joins cost about a tenth of a cache write.
    if len(key) != 64 or not _HEX.issuperset(key):
        raise ValueError(f"cache key must be 64 lowercase hex characters, got {key!r}")
    return f"{os.fspath(cache_dir)}/{key[0]}/{key}.entry"


def remove_superseded(cache_dir: Path) -> list[Path]:
    """Delete the sub-folders of the former two-digit layout (``<cache_dir>/<key[:2]>/``); returns them.

    Their entries are never read by this layout: left in place they would only hold disk space.
    """
    try:
        folders = [Path(e.path) for e in os.scandir(cache_dir) if e.is_dir() and len(e.name) == 2
                   and _HEX.issuperset(e.name)]  # fmt: skip
    except FileNotFoundError:
        return []
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return folders


def write_entry(
    cache_dir: Path,
    key: str,
    *,
    ok: bool,
    reason: str | None,
    detail: str | None,
    landmarks: np.ndarray | None,
    landmark_source: str | None,
    score: float | None,
    jpeg: bytes | None,
) -> None:
    """Store one result atomically (one file: the record line, then the JPEG).

    Args:
        cache_dir: cache root.
        key: from ``cache_key``.
        ok: whether a face was aligned; then ``jpeg`` and ``landmarks`` are required.
        reason: short failure code when not ok (``no_face``, ``low_score``, ...).
        detail: sentence for humans.
        landmarks: [5, 2] (x, y) in source-image pixels, or None.
        landmark_source: ``"given"`` or ``"detected"``, or None.
        score: detector score, or None.
        jpeg: encoded aligned face, or None.
    """
    if ok != (jpeg is not None):
        raise ValueError(f"a successful entry needs a jpeg and a failed one none; got ok={ok}, jpeg={jpeg is not None}")
    points = None if landmarks is None else np.asarray(landmarks, dtype=np.float64)
    if (points is not None and not np.isfinite(points).all()) or (score is not None and not math.isfinite(score)):
        raise ValueError(f"landmarks and score must be finite to be cached, got score={score}, landmarks={points}")
    record = {
        "format": CACHE_FORMAT,
        "key": key,
        "ok": ok,
        "reason": reason,
        "detail": detail,
        "landmarks": None if points is None else points.tolist(),
        "landmark_source": landmark_source,
        "score": score,
        "jpeg_length": None if jpeg is None else len(jpeg),
        "jpeg_sha256": None if jpeg is None else hashlib.sha256(jpeg).hexdigest(),
    }
    line = orjson.dumps(record)  # one line: JSON escapes every control character
    _write_in_place(_entry_file(cache_dir, key), line + b"\n" + (jpeg or b""))


def _write_in_place(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (truncating it), creating its folder when missing (module docstring)."""
    try:
        fd = os.open(path, _WRITE_FLAGS, _FILE_MODE)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, _WRITE_FLAGS, _FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _valid_landmarks(value: object) -> np.ndarray | None:
    """[5, 2] finite float64 array from a JSON value, or None if it is anything else."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (5, 2) and np.isfinite(array).all() else None


def read_entry(cache_dir: Path, key: str) -> dict[str, Any] | None:
    """The stored result of ``key``, or None if missing or not trustworthy.

    Returns:
        ``{"ok", "reason", "detail", "landmarks" ([5, 2] float64 or None), "landmark_source",
        "score", "jpeg" (bytes or None)}``, the fields of an ``AlignResult`` without its id.
    """
    try:
        with open(_entry_file(cache_dir, key), "rb") as f:
            data = f.read()
    except OSError:
        return None
    line, newline, jpeg = data.partition(b"\n")
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:  # truncated or not JSON
        return None
    if not newline or not isinstance(record, dict) or record.get("format") != CACHE_FORMAT or record.get("key") != key:
        return None
    ok, score, reason, detail = record.get("ok"), record.get("score"), record.get("reason"), record.get("detail")
    if not isinstance(ok, bool) or not isinstance(detail, str | None):
        return None
    if not (score is None or (isinstance(score, int | float) and math.isfinite(score))):
        return None
    landmarks = None if record.get("landmarks") is None else _valid_landmarks(record["landmarks"])
    if record.get("landmarks") is not None and landmarks is None:
        return None
    source = record.get("landmark_source")
    if ok:
        if reason is not None or landmarks is None or source not in _LANDMARK_SOURCES:
            return None
        if record.get("jpeg_length") != len(jpeg) or hashlib.sha256(jpeg).hexdigest() != record.get("jpeg_sha256"):
            return None
    else:
        if not isinstance(reason, str) or not reason or not (source is None or source in _LANDMARK_SOURCES):
            return None
        if jpeg:
            return None
        jpeg = None
    return {
        "ok": ok,
        "reason": reason,
        "detail": detail,
        "landmarks": landmarks,
        "landmark_source": source,
        "score": None if score is None else float(score),
        "jpeg": jpeg,
    }
