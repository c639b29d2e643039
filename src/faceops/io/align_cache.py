"""The per-image alignment cache: entries appended to pack files, one pack per writing process.

The key of an entry is the sha256 of a canonical JSON payload (``cache_key``) holding everything that
changes an image's result, so a re-run, or a run with a few new photos, only computes what is new.
Failures (no face, low score, ...) are entries too (with no JPEG), so they are not recomputed either.

Layout (format 3)::

    <cache_dir>/packs/<writer>.pack    entries back to back: <record JSON, one line>\\n<JPEG bytes>
    <cache_dir>/packs/<writer>.index   one line per entry: "<key> <offset> <length>\\n"

``<writer>`` names one process's run (creation time in ns, host, pid, random suffix), so concurrent writers
(the pool's workers, Dask workers on other machines sharing the folder) never share a file, and names sort
oldest first. A reader loads every index once (:class:`CacheIndex`) and reads an entry with one ``pread``.

Why packs, not one file per entry (format 2): creating a file costs what the journal and the directory
insert cost, ~25-600 us per file on the 2-core VM of ``bench/align.py`` (349 us in its last run before
this change, a fifth of aligning a 300-600 px photo), while appending 5 KB to an open file costs a few
microseconds; a million photos also made a million files. Two appends per entry (pack, then index), no
file created per entry.

Why no fsync, no temporary files: the cache is a speed-up, never the only copy of anything, so what
matters is that a bad entry is never *used*, not that a good one survives a power cut. The record names
its key, the JPEG's length and sha256; an entry that does not check out (an index line whose pack data
was lost or torn in a crash, a hand edit, a full disk) reads as a miss, gets recomputed and appended
again, and the newest copy that checks out wins. A torn last index line is ignored. An entry appended
to a pack whose index line never got written is unreachable: lost work, never wrong data.

Superseded entries (a key recomputed after damage) stay in their packs; like the whole cache, the
``packs`` folder can be deleted at any time. :func:`remove_superseded` deletes the folders of the former
layouts (``<key[0]>/`` and ``<key[:2]>/`` of one-file-per-entry), whose entries this layout never reads.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import shutil
import socket
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

__all__ = ["CACHE_FORMAT", "MAX_OPEN_PACKS", "PACKS", "CacheIndex", "PackWriter", "cache_key", "remove_superseded"]

#: Version of the entry layout below; part of every record, a mismatch reads as a miss.
CACHE_FORMAT = 3
#: The folder of the pack and index files, under the cache root.
PACKS = "packs"
#: Pack files a :class:`CacheIndex` keeps open at once (least recently read closed first): a cache filled by
#: Dask chunks has a pack per chunk, thousands for a large data set, more than a process may open.
MAX_OPEN_PACKS = 32

_LANDMARK_SOURCES = ("given", "detected")
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
_FILE_MODE = 0o644
_HEX = frozenset("0123456789abcdef")
_INDEX_LINE = re.compile(rb"([0-9a-f]{64}) (\d+) (\d+)")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


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


def _check_key(key: str) -> str:
    if len(key) != 64 or not _HEX.issuperset(key):
        raise ValueError(f"cache key must be 64 lowercase hex characters, got {key!r}")
    return key


def remove_superseded(cache_dir: Path) -> list[Path]:
    """Delete the folders of the former one-file-per-entry layouts (``<cache_dir>/<key[0]>/`` and
    ``<cache_dir>/<key[:2]>/``); returns them. Their entries are never read by this layout."""
    try:
        folders = [Path(e.path) for e in os.scandir(cache_dir) if e.is_dir() and len(e.name) in (1, 2)
                   and _HEX.issuperset(e.name)]  # fmt: skip
    except FileNotFoundError:
        return []
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return folders


def _encode_entry(
    key: str,
    *,
    ok: bool,
    reason: str | None,
    detail: str | None,
    landmarks: np.ndarray | None,
    landmark_source: str | None,
    score: float | None,
    jpeg: bytes | None,
) -> bytes:
    """One entry's bytes: the record line, then the JPEG (see :meth:`PackWriter.write` for the fields)."""
    if ok != (jpeg is not None):
        raise ValueError(f"a successful entry needs a jpeg and a failed one none; got ok={ok}, jpeg={jpeg is not None}")
    points = None if landmarks is None else np.asarray(landmarks, dtype=np.float64)
    if (points is not None and not np.isfinite(points).all()) or (score is not None and not math.isfinite(score)):
        raise ValueError(f"landmarks and score must be finite to be cached, got score={score}, landmarks={points}")
    record = {
        "format": CACHE_FORMAT,
        "key": _check_key(key),
        "ok": ok,
        "reason": reason,
        "detail": detail,
        "landmarks": None if points is None else points.tolist(),
        "landmark_source": landmark_source,
        "score": score,
        "jpeg_length": None if jpeg is None else len(jpeg),
        "jpeg_sha256": None if jpeg is None else hashlib.sha256(jpeg).hexdigest(),
    }
    return orjson.dumps(record) + b"\n" + (jpeg or b"")  # one line: JSON escapes every control character


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class PackWriter:
    """Appends entries to one new pack (and its index) of ``cache_dir``; the files are created on the first write.

    One writer per process and run: a pack has exactly one writer, so its offsets are known without asking
    the file. Not thread-safe. :meth:`close` (or the end of the process) releases the two files.
    """

    def __init__(self, cache_dir: Path | str) -> None:
        self.cache_dir = Path(cache_dir)
        self._fds: tuple[int, int] | None = None
        self._offset = 0

    def _open(self) -> tuple[int, int]:
        folder = self.cache_dir / PACKS
        folder.mkdir(parents=True, exist_ok=True)
        host = _UNSAFE_NAME.sub("_", socket.gethostname())[:40] or "host"
        name = f"{time.time_ns():020d}-{host}-{os.getpid()}-{secrets.token_hex(6)}"
        pack = os.open(folder / f"{name}.pack", _NEW_FILE_FLAGS, _FILE_MODE)
        try:
            index = os.open(folder / f"{name}.index", _NEW_FILE_FLAGS, _FILE_MODE)
        except BaseException:
            os.close(pack)
            raise
        return pack, index

    def write(self, key: str, **fields: Any) -> None:
        """Append the result of ``key``: the entry to the pack, then its index line.

        Args:
            key: from :func:`cache_key`.
            fields: ``ok`` (a face was aligned: then ``jpeg`` and ``landmarks`` are required), ``reason``
                (failure code when not ok), ``detail`` (sentence for humans), ``landmarks`` ([5, 2] (x, y) in
                source-image pixels, or None), ``landmark_source`` (``"given"``/``"detected"``/None),
                ``score`` (detector score or None), ``jpeg`` (the aligned face, or None).
        """
        data = _encode_entry(key, **fields)
        if self._fds is None:
            self._fds = self._open()
        pack, index = self._fds
        _write_all(pack, data)
        _write_all(index, f"{key} {self._offset} {len(data)}\n".encode())
        self._offset += len(data)

    def close(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _valid_landmarks(value: object) -> np.ndarray | None:
    """[5, 2] finite float64 array from a JSON value, or None if it is anything else."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (5, 2) and np.isfinite(array).all() else None


def _decode_entry(data: bytes, key: str) -> dict[str, Any] | None:
    """The result stored in ``data`` (one entry's bytes) for ``key``, or None if it does not check out.

    Returns:
        ``{"ok", "reason", "detail", "landmarks" ([5, 2] float64 or None), "landmark_source",
        "score", "jpeg" (bytes or None)}``, the fields of an ``AlignResult`` without its id.
    """
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


class CacheIndex:
    """Where every entry of a cache lies, read from its index files once; :meth:`read` verifies what it returns.

    A snapshot: entries written after loading are not seen (a run looks its images up before computing any).
    Use as a context manager, or :meth:`close`, to release the pack files opened by reads.
    """

    def __init__(self, cache_dir: Path | str) -> None:
        self.cache_dir = Path(cache_dir)
        # key -> (pack name, offset, length), oldest first (pack names start with their creation time): a key
        # appended again after damage has several
        self._locations: dict[str, list[tuple[str, int, int]]] = {}
        self._packs: OrderedDict[str, int] = OrderedDict()  # open pack files, most recently read last
        try:
            index_files = sorted(p for p in (self.cache_dir / PACKS).iterdir() if p.suffix == ".index")
        except FileNotFoundError:
            index_files = []
        for path in index_files:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            text = path.read_bytes()
        except OSError:
            return
        lines = text.split(b"\n")[:-1]  # the part after the last newline is a torn line (or empty)
        for line in lines:
            match = _INDEX_LINE.fullmatch(line)
            if match is not None:
                key, offset, length = match.groups()
                self._locations.setdefault(key.decode(), []).append((path.stem, int(offset), int(length)))

    def __len__(self) -> int:
        return len(self._locations)

    def keys(self) -> list[str]:
        """Every key an index names (an entry may still fail its check: :meth:`read` says)."""
        return sorted(self._locations)

    def read(self, key: str) -> dict[str, Any] | None:
        """The stored result of ``key`` (newest copy that checks out), or None (see :func:`_decode_entry`)."""
        for pack, offset, length in reversed(self._locations.get(key, ())):
            data = self._read_bytes(pack, offset, length)
            result = None if data is None or len(data) != length else _decode_entry(data, key)
            if result is not None:
                return result
        return None

    def _read_bytes(self, pack: str, offset: int, length: int) -> bytes | None:
        fd = self._packs.get(pack)
        if fd is None:
            try:
                fd = os.open(self.cache_dir / PACKS / f"{pack}.pack", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                return None
            if len(self._packs) >= MAX_OPEN_PACKS:
                os.close(self._packs.popitem(last=False)[1])
            self._packs[pack] = fd
        else:
            self._packs.move_to_end(pack)
        try:
            return os.pread(fd, length, offset)
        except OSError:
            return None

    def close(self) -> None:
        for fd in self._packs.values():
            os.close(fd)
        self._packs.clear()

    def __enter__(self) -> CacheIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
