"""Readers for insightface's data formats, without mxnet and without trusting pickles.

**Verification sets** (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...) are pickles of
``(bins, issame)``: ``bins`` holds ``2 * len(issame)`` encoded JPEG/PNG images, pair ``i`` being images
``2i`` and ``2i + 1``. Unpickling runs whatever callables a file names, so `load_verification_bin`
uses an unpickler that resolves **only** these names, each to a small checking stand-in (never to the
real callable):

- ``_codecs.encode(text, "latin1")`` and ``builtins.bytes()`` (``__builtin__`` too): how Python 3
  writes ``bytes`` at protocol 2;
- ``numpy.ndarray``, ``numpy.dtype`` (only ``u1`` and ``b1``), ``numpy.core.multiarray._reconstruct``,
  ``numpy.core.multiarray.scalar`` and ``numpy.core.numeric._frombuffer`` (also under ``numpy._core``):
  so a bin may be a 1-D uint8 array and ``issame`` a 1-D bool array or a list of ``numpy.bool_``.

Any other name (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) stops the load with
`UnsafeFileError` before anything is called. Plain protocol 0-5 lists, tuples, bytes, ``bytearray``,
bools and ints need no name at all; Python 2 ``str`` bins load as bytes. The result is then checked:
a pair of sequences, every bin JPEG or PNG bytes, ``issame`` booleans (or 0/1), lengths ``2n`` and ``n``.

**MXNet RecordIO** (``train.rec`` + ``train.idx``), as written by dmlc-core's RecordIO writer. The
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
"""

from __future__ import annotations

import math
import os
import pickle
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from faceops.io.atomic import atomic_file

__all__ = [
    "RECORDIO_MAGIC",
    "UnsafeFileError",
    "load_verification_bin",
    "iter_recordio",
    "write_recordio",
    "recordio_to_samples",
]

RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_PART_HEAD = struct.Struct("<II")  # magic, lrecord
_IMAGE_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2
_LENGTH_BITS = 29
_MAX_PART = (1 << _LENGTH_BITS) - 1
#: float32 represents every integer up to 2**24 exactly; a header range beyond it is corrupt.
_FLOAT32_EXACT = 1 << 24

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class UnsafeFileError(ValueError):
    """A file asked to run code (a pickle global outside the allow-list) and was refused."""


# --------------------------------------------------------------------------------------------------
# Verification .bin
# --------------------------------------------------------------------------------------------------


class _Token:
    """Base of every object the unpickler can hand out: no ``__dict__``, and a pickle BUILD on it is
    refused, so a file can neither set attributes on module-level objects nor re-wire them."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        raise UnsafeFileError(f"pickle BUILD on {type(self).__name__} refused")


class _NdarrayToken(_Token):
    """Stands in for ``numpy.ndarray``: recognised by `_reconstruct`, not callable."""

    __slots__ = ()


_NDARRAY = _NdarrayToken()
_DTYPES = {"u1": np.dtype(np.uint8), "b1": np.dtype(np.bool_)}
_DTYPE_STATE_TAIL = (None, None, None, -1, -1, 0)  # subarray, names, fields, elsize, alignment, flags


def _text(value: object) -> object:
    """Python 2 pickles loaded with ``encoding="bytes"`` give bytes where Python 3 gives str."""
    return value.decode("latin1") if isinstance(value, bytes) else value


class _DTypeToken(_Token):
    """A checked stand-in for ``numpy.dtype(name, align, copy)``, limited to u1 and b1."""

    __slots__ = ("dtype",)

    def __init__(self, name: object, align: object = False, copy: object = True) -> None:
        name = _text(name)
        if name not in _DTYPES:
            raise UnsafeFileError(f"numpy dtype {name!r} refused; only {sorted(_DTYPES)} are accepted")
        self.dtype = _DTYPES[name]

    def __setstate__(self, state: object) -> None:
        if not (
            isinstance(state, tuple)
            and len(state) == 8
            and state[0] == 3
            and _text(state[1]) == "|"
            and state[2:] == _DTYPE_STATE_TAIL
        ):
            raise UnsafeFileError(f"numpy dtype state {state!r} refused; only plain u1/b1 dtypes are accepted")


class _ArrayToken(_Token):
    """Result of ``_reconstruct(ndarray, ...)``; its ``__setstate__`` builds a checked 1-D array."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise UnsafeFileError("numpy array state refused: not (shape, dtype, fortran, data)")
        shape, dtype, _fortran, data = state
        self.value = _checked_array(data, dtype, shape)


class _Checked(_Token):
    """An allowed pickle global: calls a checking function, and is itself immune to BUILD."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def __call__(self, *args: object) -> Any:
        return self._fn(*args)


def _checked_array(data: object, dtype: object, shape: object) -> np.ndarray:
    if not isinstance(dtype, _DTypeToken):
        raise UnsafeFileError(f"numpy array with dtype {dtype!r} refused")
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafeFileError(f"numpy array data of type {type(data).__name__} refused; raw bytes expected")
    if not (isinstance(shape, tuple) and len(shape) == 1 and isinstance(shape[0], int)):
        raise UnsafeFileError(f"numpy array of shape {shape!r} refused; only 1-D arrays are accepted")
    if shape[0] * dtype.dtype.itemsize != len(data):
        raise ValueError(f"numpy array of shape {shape} does not match its {len(data)} data bytes")
    return np.frombuffer(bytes(data), dtype=dtype.dtype).copy()


def _reconstruct(subtype: object, shape: object, typecode: object) -> _ArrayToken:
    if subtype is not _NDARRAY:
        raise UnsafeFileError(f"numpy _reconstruct of {subtype!r} refused; only numpy.ndarray is accepted")
    return _ArrayToken()


def _frombuffer(data: object, dtype: object, shape: object, order: object = "C") -> np.ndarray:
    return _checked_array(data, dtype, shape)


def _scalar(dtype: object, data: object) -> bool | int:
    if not isinstance(dtype, _DTypeToken) or not isinstance(data, bytes) or len(data) != 1:
        raise UnsafeFileError("numpy scalar refused; only one-byte u1/b1 scalars are accepted")
    value = np.frombuffer(data, dtype=dtype.dtype)[0]
    return bool(value) if dtype.dtype == np.bool_ else int(value)


def _latin1_encode(text: object, encoding: object) -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeFileError(f"_codecs.encode with ({type(text).__name__}, {encoding!r}) refused")
    return text.encode("latin1")


def _empty_bytes(*args: object) -> bytes:
    if args:
        raise UnsafeFileError("builtins.bytes with arguments refused; only bytes() is accepted")
    return b""


_ALLOWED_GLOBALS: dict[tuple[str, str], _Token] = {
    ("_codecs", "encode"): _Checked(_latin1_encode),
    ("builtins", "bytes"): _Checked(_empty_bytes),
    ("__builtin__", "bytes"): _Checked(_empty_bytes),
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Checked(_DTypeToken),
}
for _package in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_package}.multiarray", "_reconstruct")] = _Checked(_reconstruct)
    _ALLOWED_GLOBALS[(f"{_package}.multiarray", "scalar")] = _Checked(_scalar)
    _ALLOWED_GLOBALS[(f"{_package}.numeric", "_frombuffer")] = _Checked(_frombuffer)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose only resolvable globals are the checked stand-ins above."""

    def __init__(self, file: IO[bytes], origin: str) -> None:
        super().__init__(file, encoding="bytes")
        self._origin = origin

    def find_class(self, module: str, name: str) -> _Token:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafeFileError(
                f"{self._origin}: refused to load '{module}.{name}' from the pickle; a verification "
                "set only needs lists of image bytes and booleans. The file is not an insightface .bin "
                "or was tampered with: do not open it with pickle.load"
            )
        return allowed

    def persistent_load(self, pid: object) -> Any:
        raise UnsafeFileError(f"{self._origin}: refused a persistent id in the pickle ({pid!r})")


def _as_image_bytes(item: object, index: int, origin: str) -> bytes:
    if isinstance(item, _ArrayToken):
        item = item.value
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
        item = item.tobytes()
    if isinstance(item, bytearray):
        item = bytes(item)
    if not isinstance(item, bytes):
        raise ValueError(f"{origin}: bins[{index}] is {type(item).__name__}, expected encoded image bytes")
    if not (item.startswith(_JPEG_MAGIC) or item.startswith(_PNG_MAGIC)):
        raise ValueError(f"{origin}: bins[{index}] is not a JPEG or PNG image (starts with {item[:8]!r})")
    return item


def _as_issame(value: object, origin: str) -> np.ndarray:
    if isinstance(value, _ArrayToken):
        value = value.value
    if isinstance(value, np.ndarray):
        if value.dtype != np.bool_ or value.ndim != 1:
            raise ValueError(f"{origin}: issame array must be 1-D bool, got {value.dtype} {value.shape}")
        return value.copy()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{origin}: issame is {type(value).__name__}, expected a list of booleans")
    bad = [v for v in value if not (isinstance(v, (bool, int)) and v in (0, 1))]
    if bad:
        raise ValueError(f"{origin}: issame must hold booleans (or 0/1), found {bad[:3]!r}")
    return np.array(value, dtype=bool)


def load_verification_bin(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """Load an insightface verification set (``lfw.bin`` style) without executing the pickle.

    Args:
        path: the ``.bin`` file.

    Returns:
        ``(bins, issame)``: ``2n`` encoded images (pair ``i`` = ``bins[2i]``, ``bins[2i + 1]``) and
        ``issame`` [n] bool.

    Raises:
        UnsafeFileError: the pickle names a callable outside the allow-list (see module docstring);
            nothing it names is ever called.
        ValueError: the file is not a valid pickle or does not have the verification-set structure.
    """
    origin = str(path)
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, origin).load()
    except UnsafeFileError as err:
        if str(err).startswith(origin):
            raise
        raise UnsafeFileError(f"{origin}: {err}") from None
    except Exception as err:  # any other failure to decode untrusted bytes means "not a valid file"
        raise ValueError(f"{origin}: not a readable verification .bin ({type(err).__name__}: {err})") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise ValueError(f"{origin}: expected a pickled pair (bins, issame), got {type(obj).__name__}")
    raw_bins, raw_issame = obj
    if not isinstance(raw_bins, (list, tuple)):
        raise ValueError(f"{origin}: bins is {type(raw_bins).__name__}, expected a list of image bytes")
    issame = _as_issame(raw_issame, origin)
    if len(issame) == 0 or len(raw_bins) != 2 * len(issame):
        raise ValueError(
            f"{origin}: {len(raw_bins)} images for {len(issame)} pairs; a verification set holds "
            "exactly two images per pair and at least one pair"
        )
    bins = [_as_image_bytes(item, i, origin) for i, item in enumerate(raw_bins)]
    return bins, issame


# --------------------------------------------------------------------------------------------------
# RecordIO
# --------------------------------------------------------------------------------------------------


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
