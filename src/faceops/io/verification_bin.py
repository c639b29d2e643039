"""Load insightface's verification sets (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...) without trusting the pickle.

A verification set is a pickle of ``(bins, issame)``: ``bins`` holds ``2 * len(issame)`` encoded JPEG/PNG
images, pair ``i`` being images ``2i`` and ``2i + 1``. Unpickling runs whatever callables a file names, so
`load_verification_bin` uses an unpickler that resolves **only** these names, each to a small checking
stand-in (never to the real callable):

- ``_codecs.encode(text, "latin1")`` and ``builtins.bytes()`` (``__builtin__`` too): how Python 3
  writes ``bytes`` at protocol 2;
- ``numpy.ndarray``, ``numpy.dtype`` (only ``u1`` and ``b1``), ``numpy.core.multiarray._reconstruct``,
  ``numpy.core.multiarray.scalar`` and ``numpy.core.numeric._frombuffer`` (also under ``numpy._core``):
  so a bin may be a 1-D uint8 array and ``issame`` a 1-D bool array or a list of ``numpy.bool_``.

Any other name (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) stops the load with
`UnsafeFileError` before anything is called. Plain protocol 0-5 lists, tuples, bytes, ``bytearray``,
bools and ints need no name at all; Python 2 ``str`` bins load as bytes. The result is then checked:
a pair of sequences, every bin JPEG or PNG bytes, ``issame`` booleans (or 0/1), lengths ``2n`` and ``n``.
No mxnet is needed. insightface's training sets (MXNet RecordIO) are read by `faceops.io.recordio`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["UnsafeFileError", "load_verification_bin"]

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class UnsafeFileError(ValueError):
    """A file asked to run code (a pickle global outside the allow-list) and was refused."""


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
