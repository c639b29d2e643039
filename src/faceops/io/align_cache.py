"""The per-image alignment cache: one JSON record (+ one JPEG for a success) per cache key.

Layout: ``<cache_dir>/<key[:2]>/<key>.json`` and ``<key>.jpg``. The key is the sha256 of a canonical
JSON payload (``cache_key``) holding everything that changes the result, so a re-run, or a run with a
few new photos, only computes what is new. Failures (no face, low score, ...) are records too, so
they are not recomputed either.

Why the reader distrusts every file: a killed run, a full disk or a hand edit can leave a truncated
JPEG or a record of another key. The JSON is written last and names its key and the sha256 of its
JPEG; anything that does not check out reads as a miss and gets recomputed and overwritten.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CACHE_FORMAT", "cache_key", "entry_paths", "read_entry", "write_entry"]

#: Version of the record layout below; part of every record, a mismatch reads as a miss.
CACHE_FORMAT = 1

_LANDMARK_SOURCES = ("given", "detected")


def cache_key(payload: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of ``payload`` (sorted keys, no spaces, floats as repr).

    Raises:
        ValueError: the payload holds NaN/inf (they have no canonical JSON form).
    """
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def entry_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    """(record .json, face .jpg) paths of ``key``."""
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"cache key must be 64 lowercase hex characters, got {key!r}")
    folder = Path(cache_dir) / key[:2]
    return folder / f"{key}.json", folder / f"{key}.jpg"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a uniquely named sibling, then rename: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    """Store one result atomically: the JPEG first (if any), then the record that vouches for it.

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
    record_path, jpeg_path = entry_paths(cache_dir, key)
    if not record_path.parent.is_dir():
        record_path.parent.mkdir(parents=True, exist_ok=True)
    if jpeg is not None:
        _write_atomic(jpeg_path, jpeg)
    record = {
        "format": CACHE_FORMAT,
        "key": key,
        "ok": ok,
        "reason": reason,
        "detail": detail,
        "landmarks": None if landmarks is None else np.asarray(landmarks, dtype=np.float64).tolist(),
        "landmark_source": landmark_source,
        "score": score,
        "jpeg_sha256": None if jpeg is None else hashlib.sha256(jpeg).hexdigest(),
    }
    _write_atomic(record_path, json.dumps(record, sort_keys=True, allow_nan=False).encode("utf-8"))


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
    record_path, jpeg_path = entry_paths(cache_dir, key)
    try:
        record = json.loads(record_path.read_bytes())
    except (OSError, ValueError):  # missing, unreadable, truncated or not JSON
        return None
    if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT or record.get("key") != key:
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
        try:
            jpeg = jpeg_path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(jpeg).hexdigest() != record.get("jpeg_sha256"):
            return None
    else:
        if not isinstance(reason, str) or not reason or not (source is None or source in _LANDMARK_SOURCES):
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
