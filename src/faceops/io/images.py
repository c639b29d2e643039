"""Decode and validate one image file into an ``[H, W, 3]`` uint8 RGB array, or say why not.

Every image that enters the pipeline goes through :func:`decode_image`, so ingest and align agree on
what a valid image is and on its pixels. The rules, and why:

* **Size limits come before pixels.** The header is parsed first and an image over ``max_pixels`` is
  refused before any pixel buffer is allocated (decompression bombs). Pillow's own process-wide bomb
  check (``PIL.Image.MAX_IMAGE_PIXELS``) is switched off only for that header parse, under a lock,
  and restored at once, so ``max_pixels`` is the one limit that applies and global state is unchanged
  afterwards.
* **Fully decoded, never half-accepted.** All pixels are decoded (``load()``), and Pillow must not
  accept truncated files (``ImageFile.LOAD_TRUNCATED_IMAGES`` must be False; we refuse to run
  otherwise). PNG chunks are CRC-checked to the end (``verify()``), because Pillow decodes a PNG that
  lost its tail without complaint; a WebP shorter than its RIFF header says is truncated.
* **Displayed orientation.** The EXIF orientation is applied, so width, height and pixel coordinates
  (landmarks included) are those of the image as a viewer shows it.
* **One pixel format out.** Grey, palette, CMYK, YCbCr, LAB and HSV are converted to RGB. Images with
  alpha (LA, PA, RGBA, or a palette/grey/RGB ``transparency`` key) are composited on **white**: the
  colour stored under fully transparent pixels is arbitrary (often black), and white keeps cut-out
  faces on a neutral background. 16-bit samples (``I;16*``, ``I``) are scaled by 255/65535 with
  rounding (65535 -> 255, 32768 -> 128), never clipped. Float images (``F``) are read as [0, 1] when all
  values lie there, else as [0, 255] and clipped. 16-bit RGB PNGs are reduced to 8 bits by Pillow
  itself (high byte). Embedded ICC profiles are not applied. Multi-frame files give their first frame.
* Only the formats in :data:`ALLOWED_FORMATS` are opened: a face pipeline has no use for the rarer
  Pillow plugins, and each one is more attack surface.

**Fast path for plain JPEGs** (most photos: Pillow's decode plus its RGBX -> RGB copies took ~1.2x
the time of OpenCV's decode, the largest cost of the align stage). A JPEG whose own marker segments
show an 8-bit, 3-component frame (no Adobe colour transform, not a multi-picture file) and exactly one
sequential Huffman scan followed by EOI with no stray marker in the entropy data is decoded by OpenCV
straight into an RGB array; its size limits are checked on the frame header first and its EXIF
orientation (read from the same segments) is then applied as above. One pass over the markers
replaces Pillow's header parse, which cost as much as the rest of the align stage's bookkeeping. Both libraries decode with libjpeg-turbo's defaults (ISLOW IDCT, fancy
upsampling), so the pixels are the same (tests compare them). The structural check keeps the
verdicts the same: Pillow rejects a file that ends early or whose scan runs into a bad marker, while
OpenCV decodes it with a warning, so any such file, and any file OpenCV cannot decode, takes the
Pillow path and gets its verdict.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "ALLOWED_FORMATS",
    "REJECT_REASONS",
    "ImageRejected",
    "decode_image",
    "read_image",
    "read_image_bytes",
    "sha256_bytes",
]

#: Pillow format names that :func:`decode_image` will open ("JPEG" includes multi-picture MPO files).
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM")

#: Reason codes an :class:`ImageRejected` may carry (quarantine ``reason`` values).
REJECT_REASONS: tuple[str, ...] = (
    "empty_file",
    "not_an_image",
    "truncated",
    "too_large",
    "too_small",
    "unsupported_mode",
    "corrupt",
)

_RGB_MODES = frozenset({"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})
_ALPHA_MODES = frozenset({"LA", "PA", "RGBA", "RGBa"})
_UINT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# What Pillow raises from a damaged file (zlib/struct from PNG and TIFF internals).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)
# Guards the short window in which Pillow's global bomb limit is lifted (see module docstring).
_HEADER_LOCK = threading.Lock()
# EXIF orientation -> the same transpose as ImageOps.exif_transpose, on an [H, W, 3] array.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}
_JPEG_SEQUENTIAL_SOF = (0xC0, 0xC1)  # baseline and extended sequential, Huffman-coded
_JPEG_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xDA)})  # TEM, RSTn, SOI, EOI: markers without a length


class ImageRejected(Exception):
    """An image file that must not enter the pipeline.

    Attributes:
        reason: short code, one of :data:`REJECT_REASONS` (the quarantine ``reason``).
        detail: a sentence for humans naming the value that failed and the limit.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}; allowed: {REJECT_REASONS}")
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data`` (the content hash used for de-duplication and caches)."""
    return hashlib.sha256(data).hexdigest()


def read_image_bytes(path: Path, *, max_bytes: int | None = None) -> bytes:
    """Read a file's bytes, refusing one over ``max_bytes`` before reading it.

    Args:
        path: the file.
        max_bytes: largest accepted size in bytes; ``None`` for no limit.

    Returns:
        The file content.

    Raises:
        ImageRejected: ``too_large`` when the file exceeds ``max_bytes``.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as fh:
        if max_bytes is None:
            return fh.read()
        size = os.fstat(fh.fileno()).st_size
        data = fh.read(max_bytes + 1)  # +1: a file that grew after stat() is still caught
        if size > max_bytes or len(data) > max_bytes:
            raise ImageRejected(
                "too_large",
                f"file has {max(size, len(data))} bytes, more than max_file_bytes={max_bytes}; "
                "re-encode it smaller or raise ingest.max_file_bytes",
            )
        return data


def read_image(path: Path, *, max_pixels: int, min_side: int = 1, max_bytes: int | None = None) -> np.ndarray:
    """Read and decode one image file; see :func:`decode_image` for the rules.

    Args:
        path: the image file.
        max_pixels: largest accepted width * height.
        min_side: smallest accepted min(width, height).
        max_bytes: largest accepted file size; ``None`` for no limit.

    Returns:
        [H, W, 3] uint8 RGB in displayed (EXIF-transposed) orientation.

    Raises:
        ImageRejected: the file is not a usable image (``reason`` says why).
        OSError: the file cannot be read.
    """
    return decode_image(read_image_bytes(path, max_bytes=max_bytes), max_pixels=max_pixels, min_side=min_side)


def decode_image(data: bytes, *, max_pixels: int, min_side: int = 1) -> np.ndarray:
    """Fully decode an encoded image into RGB, enforcing size limits before decoding pixels.

    Args:
        data: the encoded file content.
        max_pixels: largest accepted width * height (checked on the header, before decoding).
        min_side: smallest accepted min(width, height).

    Returns:
        [H, W, 3] uint8 RGB in displayed (EXIF-transposed) orientation.

    Raises:
        ImageRejected: ``empty_file``, ``not_an_image``, ``truncated``, ``too_large``, ``too_small``,
            ``unsupported_mode`` or ``corrupt``.
        RuntimeError: ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` was set True by other code.
    """
    if not data:
        raise ImageRejected("empty_file", "the file has 0 bytes")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by other code in this process), so truncated "
            "images would decode silently; set it back to False before decoding"
        )
    fast = _decode_plain_jpeg(data, max_pixels=max_pixels, min_side=min_side)
    if fast is not None:
        return fast
    _check_webp_length(data)  # before opening: Pillow's WebP open fails on a short file with a vague error
    im = _open_header(data)
    _check_size(im.size, max_pixels=max_pixels, min_side=min_side)
    _check_png_chunks(im.format, data)
    try:
        im.load()
        ImageOps.exif_transpose(im, in_place=True)
    except Image.DecompressionBombError as err:  # a later frame or tile larger than the header said
        raise ImageRejected("too_large", str(err)) from err
    except _DECODE_ERRORS as err:
        raise _decode_failure(im.format, err) from err
    return _to_rgb(im)


def _open_header(data: bytes, formats: tuple[str, ...] = ALLOWED_FORMATS) -> ImageFile.ImageFile:
    """Parse the header only (no pixel buffer), with Pillow's global bomb limit lifted under a lock."""
    with _HEADER_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # our own max_pixels check runs right after, before any decoding
        try:
            return Image.open(io.BytesIO(data), formats=formats)
        except UnidentifiedImageError as err:
            raise ImageRejected(
                "not_an_image", f"not a recognised image; allowed formats: {', '.join(formats)}"
            ) from err
        except _DECODE_ERRORS as err:
            raise _decode_failure("image", err) from err
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_size(size: tuple[int, int], *, max_pixels: int, min_side: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageRejected(
            "too_large",
            f"{width}x{height} = {width * height} pixels, more than max_pixels={max_pixels}; "
            "downscale it or raise ingest.max_pixels",
        )
    if min(width, height) < min_side:
        raise ImageRejected("too_small", f"{width}x{height} has a side shorter than min_side={min_side}")


def _check_png_chunks(fmt: str | None, data: bytes) -> None:
    """CRC-check every PNG chunk up to IEND: Pillow's ``load()`` accepts a PNG that lost its tail."""
    if fmt != "PNG":
        return
    verifier = _open_header(data, ("PNG",))
    try:
        verifier.verify()
    except _DECODE_ERRORS as err:
        raise _decode_failure(fmt, err) from err


def _check_webp_length(data: bytes) -> None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8  # the RIFF size excludes its 8-byte header
        if len(data) < declared:
            raise ImageRejected("truncated", f"WEBP file has {len(data)} bytes, its header declares {declared}")


def _decode_plain_jpeg(data: bytes, *, max_pixels: int, min_side: int) -> np.ndarray | None:
    """[H, W, 3] uint8 RGB of a plain JPEG via OpenCV (module docstring), or None for the Pillow path.

    Raises:
        ImageRejected: a plain JPEG whose frame breaks the size limits (checked before decoding).
    """
    found = _plain_jpeg_header(data)
    if found is None:
        return None
    (width, height), orientation = found
    _check_size((width, height), max_pixels=max_pixels, min_side=min_side)
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        return None  # Pillow decides
    if pixels is None or pixels.shape != (height, width, 3) or pixels.dtype != np.uint8:
        return None
    transpose = _ORIENT.get(orientation)
    return pixels if transpose is None else np.ascontiguousarray(transpose(pixels))


def _plain_jpeg_header(data: bytes) -> tuple[tuple[int, int], int] | None:
    """((width, height), EXIF orientation) of a plain JPEG, or None when the file is anything else.

    Plain: SOI, marker segments up to one 8-bit, 3-component sequential Huffman frame (no Adobe APP14
    colour transform, no multi-picture APP2), one scan whose entropy data ends in EOI with no stray marker.
    Walks the marker segments once; anything unexpected (progressive, several scans, truncated, a
    corrupt marker) returns None and leaves the verdict to Pillow.
    """
    if data[:2] != b"\xff\xd8":
        return None
    pos, size, orientation = 2, None, 1
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos + 4 : pos + 2 + length]
        if marker in _JPEG_SEQUENTIAL_SOF:
            if len(segment) < 6 or segment[0] != 8 or segment[5] != 3:
                return None
            size = (int.from_bytes(segment[3:5], "big"), int.from_bytes(segment[1:3], "big"))
        elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # any other SOF: not plain
            return None
        elif marker == 0xEE and segment.startswith(b"Adobe") or marker == 0xE2 and segment.startswith(b"MPF\0"):
            return None
        elif marker == 0xE1 and segment.startswith(b"Exif\0\0") and orientation == 1:
            orientation = _exif_orientation(segment[6:])
            if orientation is None:
                return None
        elif marker == 0xDA:
            plain = size is not None and 0 not in size and _entropy_data_ends_with_eoi(data, pos + 2 + length)
            return (size, orientation) if plain else None
        pos += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag (0x0112) of IFD0 of an EXIF TIFF block: 1 when absent, None when unreadable."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8 or struct.unpack(order + "H", tiff[2:4])[0] != 42:
        return None
    ifd = struct.unpack(order + "I", tiff[4:8])[0]
    if ifd + 2 > len(tiff):
        return None
    count = struct.unpack(order + "H", tiff[ifd : ifd + 2])[0]
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        tag, kind, values = struct.unpack(order + "HHI", tiff[entry : entry + 8])
        if tag == 0x0112:
            return struct.unpack(order + "H", tiff[entry + 8 : entry + 10])[0] if kind == 3 and values >= 1 else None
    return 1


def _entropy_data_ends_with_eoi(data: bytes, start: int) -> bool:
    body = np.frombuffer(data, np.uint8)[start:]
    if body.size < 2:
        return False
    follow = body[1:]
    marker = (body[:-1] == 0xFF) & (follow != 0x00) & ((follow & 0xF8) != 0xD0)  # not stuffing, not RSTn
    first = int(marker.argmax())  # 0 when there is none: then marker[0] is False
    return bool(marker[first]) and follow[first] == 0xD9


def _decode_failure(fmt: str | None, err: BaseException) -> ImageRejected:
    message = str(err) or type(err).__name__
    lowered = message.lower()
    if isinstance(err, EOFError) or "truncated" in lowered or "incomplete" in lowered:
        return ImageRejected("truncated", f"{fmt} data ends early: {message}")
    return ImageRejected("corrupt", f"{fmt} data cannot be decoded: {message}")


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Convert any supported mode to [H, W, 3] uint8 RGB (rules in the module docstring)."""
    mode = im.mode
    if mode in _UINT16_MODES or mode == "I":
        samples = np.asarray(im).astype(np.int64)
        low, high = int(samples.min()), int(samples.max())
        if low < 0 or high > 65535:
            raise ImageRejected(
                "unsupported_mode", f"mode {mode} holds values in [{low}, {high}], outside 16-bit [0, 65535]"
            )
        return _gray_to_rgb(np.rint(samples * (255.0 / 65535.0)).astype(np.uint8))
    if mode == "F":
        samples = np.asarray(im, dtype=np.float64)
        if not np.isfinite(samples).all():
            raise ImageRejected("corrupt", "float image holds NaN or infinite values")
        scale = 255.0 if samples.min() >= 0.0 and samples.max() <= 1.0 else 1.0
        return _gray_to_rgb(np.rint(np.clip(samples * scale, 0.0, 255.0)).astype(np.uint8))
    if mode in _ALPHA_MODES or (mode in _RGB_MODES and "transparency" in im.info):
        return _composite_on_white(np.asarray(im.convert("RGBA")))
    if mode == "RGB":
        return np.asarray(im)  # convert("RGB") would copy the whole image once more
    if mode in _RGB_MODES:
        return np.asarray(im.convert("RGB"))
    raise ImageRejected(
        "unsupported_mode",
        f"pixel mode {mode!r} is not supported; supported: {sorted(_RGB_MODES | _ALPHA_MODES | _UINT16_MODES)}, "
        "I, F",
    )


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """[H, W, 4] uint8 -> [H, W, 3] uint8: out = rgb * a + 255 * (1 - a), rounded."""
    rgb = rgba[:, :, :3].astype(np.uint32)
    alpha = rgba[:, :, 3:].astype(np.uint32)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
