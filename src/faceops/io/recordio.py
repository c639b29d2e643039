"""Read and write MXNet RecordIO files, the format of insightface's training sets, without mxnet.

An indexed RecordIO set is ``train.rec`` + ``train.idx``, as written by dmlc-core's RecordIO writer. The
``.rec`` file is a run of little-endian parts, each ``magic:u32 = 0xced7230a``, ``lrecord:u32``, then
the data padded with zeros to a multiple of 4 bytes. ``lrecord`` keeps the data length in its low 29
bits and a continuation flag ``cflag`` in its top 3 bits: 0 = a whole record, 1/2/3 = first/middle/last
part of a record that was split because the magic number appeared, 4-byte aligned, inside it. The
writer drops each such aligned magic and cuts the record there, so a reader re-joins the parts with
the magic bytes between them. ``train.idx`` is text, one ``key<TAB>byte offset`` line per record.

Each image record starts with mxnet's image header, ``struct "<IfQQ"`` (24 bytes): ``flag:u32``,
``label:f32``, ``id:u64``, ``id2:u64``. With ``flag == 0`` the label is the float; with ``flag > 0``,
``flag`` float32 labels follow the header (and the float field is unused). The encoded image is the
rest. insightface's face sets put a *header record* at key 0: ``flag = 2``, no image, label
``(a, b)``: images are keys ``1 .. a-1`` and keys ``a .. b-1`` are one record per identity whose label
is that identity's ``[first, end)`` image-key range. Image labels are the identity's class index
(float, or the first of the label array). We take record 0 as that header only when it has labels
(flag > 0) *and* no image, so a multi-label image set written by mxnet's im2rec (no header, every
record an image) is not misread; such files are read in ``.idx`` order. Files from dmlc-core before
2016 (magic ``0x3ed7230a``, 30-bit lengths) are refused with a bad-magic error.

insightface's verification sets (``.bin`` pickles) are read by `faceops.io.verification_bin`.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from faceops.io.atomic import atomic_file

__all__ = ["RECORDIO_MAGIC", "iter_recordio", "recordio_to_samples", "write_recordio"]

RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_PART_HEAD = struct.Struct("<II")  # magic, lrecord
_IMAGE_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2
_LENGTH_BITS = 29
_MAX_PART = (1 << _LENGTH_BITS) - 1
#: float32 represents every integer up to 2**24 exactly; a header range beyond it is corrupt.
_FLOAT32_EXACT = 1 << 24


def _read_index(idx_path: str | Path) -> list[tuple[int, int]]:
    """``(key, offset)`` per line of a ``.idx`` file, in file order."""
    entries: list[tuple[int, int]] = []
    seen: set[int] = set()
    with open(idx_path, encoding="ascii") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                key, offset = int(fields[0]), int(fields[1])
                if len(fields) != 2:
                    raise ValueError
            except (ValueError, IndexError):
                raise ValueError(
                    f"{idx_path}:{lineno}: expected 'key<TAB>offset' with two integers, got {line.rstrip()!r}"
                ) from None
            if offset < 0 or key in seen:
                problem = "negative offset" if offset < 0 else f"key {key} repeated"
                raise ValueError(f"{idx_path}:{lineno}: {problem} in {line.rstrip()!r}")
            seen.add(key)
            entries.append((key, offset))
    return entries


class _RecordFile:
    """Random access to the records of an open ``.rec`` file, with bounds checks."""

    def __init__(self, f: BinaryIO, origin: str) -> None:
        self._f = f
        self._origin = origin
        self._size = os.fstat(f.fileno()).st_size

    def _read_exact(self, offset: int, count: int, start: int, what: str) -> bytes:
        self._f.seek(offset)
        data = self._f.read(count)
        if len(data) != count:
            raise ValueError(
                f"{self._origin}: truncated file: {what} at offset {offset} needs {count} bytes, "
                f"{len(data)} left (record starting at offset {start}; file size {self._size})"
            )
        return data

    def record(self, offset: int) -> bytes:
        """The whole record starting at ``offset``, multi-part records re-joined."""
        if not 0 <= offset < self._size:
            raise ValueError(f"{self._origin}: record offset {offset} is outside the file (size {self._size})")
        parts: list[bytes] = []
        pos = offset
        while True:
            magic, lrecord = _PART_HEAD.unpack(self._read_exact(pos, _PART_HEAD.size, offset, "part header"))
            if magic != RECORDIO_MAGIC:
                raise ValueError(
                    f"{self._origin}: bad magic 0x{magic:08x} at offset {pos} (expected 0x{RECORDIO_MAGIC:08x}); "
                    "the .idx offset is wrong or the file is not MXNet RecordIO"
                )
            cflag, length = lrecord >> _LENGTH_BITS, lrecord & _MAX_PART
            expected = (0, 1) if not parts else (2, 3)
            if cflag not in expected:
                raise ValueError(
                    f"{self._origin}: part at offset {pos} has continuation flag {cflag}, expected one of "
                    f"{expected} (record starting at offset {offset})"
                )
            padded = (length + 3) & ~3
            parts.append(self._read_exact(pos + _PART_HEAD.size, padded, offset, "record data")[:length])
            pos += _PART_HEAD.size + padded
            if cflag in (0, 3):
                return b"".join(parts)
            parts.append(_MAGIC_BYTES)


def _unpack_image_record(record: bytes, key: int, origin: str) -> tuple[int, float | np.ndarray, bytes]:
    """``(flag, label, payload)`` of a record: the float label or the ``flag`` float32 labels."""
    if len(record) < _IMAGE_HEADER.size:
        raise ValueError(f"{origin}: record {key} has {len(record)} bytes, shorter than the 24-byte image header")
    flag, label, _id, _id2 = _IMAGE_HEADER.unpack_from(record)
    if flag == 0:
        return 0, float(label), record[_IMAGE_HEADER.size :]
    end = _IMAGE_HEADER.size + 4 * flag
    if end > len(record):
        raise ValueError(f"{origin}: record {key} announces {flag} labels but has only {len(record)} bytes")
    labels = np.frombuffer(record, dtype="<f4", count=flag, offset=_IMAGE_HEADER.size).astype(np.float32)
    return flag, labels, record[end:]


def iter_recordio(
    rec_path: str | Path, idx_path: str | Path
) -> Iterator[tuple[int, float | np.ndarray, bytes]]:
    """Every record of an indexed RecordIO file, in ``.idx`` order.

    Args:
        rec_path: the ``.rec`` file.
        idx_path: its ``.idx`` file.

    Yields:
        ``(key, label, payload)``: ``label`` is a float (header flag 0) or a float32 array [flag];
        ``payload`` is what follows the labels (the encoded image; empty for insightface's
        header/identity records).

    Raises:
        ValueError: malformed ``.idx`` line, offset outside the file, bad magic, unexpected
            continuation flag, or truncated data; the message gives the offset.
    """
    index = _read_index(idx_path)
    with open(rec_path, "rb") as f:
        records = _RecordFile(f, str(rec_path))
        for key, offset in index:
            _flag, label, payload = _unpack_image_record(records.record(offset), key, str(rec_path))
            yield key, label, payload


def _pack_image_record(key: int, label: float | Sequence[float] | np.ndarray, payload: bytes) -> bytes:
    if isinstance(label, (int, float, np.integer, np.floating)):
        return _IMAGE_HEADER.pack(0, float(label), key, 0) + payload
    labels = np.asarray(label, dtype="<f4")
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"record {key}: label must be a number or a non-empty 1-D sequence, got shape {labels.shape}")
    return _IMAGE_HEADER.pack(labels.size, 0.0, key, 0) + labels.tobytes() + payload


def _write_parts(f: BinaryIO, record: bytes) -> None:
    """Write one record, split at every 4-byte-aligned copy of the magic (dropped from the data)."""
    if len(record) > _MAX_PART:
        raise ValueError(f"a record of {len(record)} bytes exceeds the RecordIO limit of {_MAX_PART} bytes")
    cuts = []
    at = record.find(_MAGIC_BYTES)
    while at != -1:
        if at % 4 == 0:
            cuts.append(at)
        at = record.find(_MAGIC_BYTES, at + 1)
    start = 0
    for i, cut in enumerate(cuts):
        f.write(_PART_HEAD.pack(RECORDIO_MAGIC, ((1 if i == 0 else 2) << _LENGTH_BITS) | (cut - start)))
        f.write(record[start:cut])  # cut - start is a multiple of 4: no padding
        start = cut + 4
    tail = len(record) - start
    f.write(_PART_HEAD.pack(RECORDIO_MAGIC, ((3 if cuts else 0) << _LENGTH_BITS) | tail))
    f.write(record[start:])
    f.write(b"\0" * ((-tail) % 4))


def write_recordio(
    rec_path: str | Path,
    idx_path: str | Path,
    records: Iterable[tuple[int, float | Sequence[float] | np.ndarray, bytes]],
) -> None:
    """Write an indexed RecordIO file that mxnet and `iter_recordio` can read.

    A numeric label is stored in the header (flag 0); a sequence of labels is stored as ``flag``
    float32 values after the header. The header ``id`` is the key, ``id2`` is 0. To build an
    insightface-style set, write key 0 with label ``(first_identity_key, end_key)`` and an empty payload.

    Args:
        rec_path: the ``.rec`` file to create (replaced if present).
        idx_path: the ``.idx`` file to create.
        records: ``(key, label, payload)`` with distinct non-negative integer keys.
    """
    seen: set[int] = set()
    with atomic_file(rec_path) as rec, atomic_file(idx_path) as idx:
        for key, label, payload in records:
            if not isinstance(key, (int, np.integer)) or key < 0 or key in seen:
                raise ValueError(f"record keys must be distinct non-negative integers; got {key!r}")
            seen.add(int(key))
            offset = rec.tell()
            _write_parts(rec, _pack_image_record(int(key), label, bytes(payload)))
            idx.write(f"{int(key)}\t{offset}\n".encode("ascii"))


def _identity_of(label: float | np.ndarray, key: int, origin: str) -> str:
    value = float(label) if isinstance(label, float) else float(label[0])
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise ValueError(
            f"{origin}: record {key} has label {value!r}; an identity class must be a non-negative integer"
        )
    return str(int(value))


def recordio_to_samples(rec_path: str | Path, idx_path: str | Path) -> Iterator[tuple[str, bytes]]:
    """The face images of an insightface training set with their identity names.

    With insightface's header record at key 0 (flag > 0, no image), the images are keys
    ``1 .. label[0] - 1`` in key order and the identity records after them are skipped; otherwise every
    record of the ``.idx`` is an image, in file order. The identity name is the class index as a
    decimal string (``"0"``, ``"17"``, ...): a float label, or the first of a label array.

    Yields:
        ``(identity, image_bytes)`` per image.

    Raises:
        ValueError: as `iter_recordio`; also a header whose image keys are missing from the ``.idx``,
            an image record without image bytes, or a label that is not a class index.
    """
    origin = str(rec_path)
    index = _read_index(idx_path)
    offsets = dict(index)
    with open(rec_path, "rb") as f:
        records = _RecordFile(f, origin)
        keys: Iterable[int] = [key for key, _ in index]
        if 0 in offsets:
            flag, label, payload = _unpack_image_record(records.record(offsets[0]), 0, origin)
            if flag > 0 and not payload:
                end = int(label[0])
                if not 1 <= end <= _FLOAT32_EXACT:
                    raise ValueError(f"{origin}: header record 0 gives image keys up to {end}, not in [1, 2**24]")
                missing = [k for k in range(1, end) if k not in offsets]
                if missing:
                    raise ValueError(
                        f"{origin}: header record 0 says images are keys 1..{end - 1}, but {len(missing)} "
                        f"are missing from {idx_path} (first: {missing[:5]})"
                    )
                keys = range(1, end)
        for key in keys:
            _flag, label, payload = _unpack_image_record(records.record(offsets[key]), key, origin)
            if not payload:
                raise ValueError(f"{origin}: record {key} holds no image bytes")
            yield _identity_of(label, key, origin), payload
