"""Tests for faceops.io.images: every kind of bad file gets its reason, every good mode becomes RGB."""

from __future__ import annotations

import hashlib
import io
import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from faceops.io.images import (
    REJECT_REASONS,
    ImageRejected,
    _plain_jpeg_header,
    decode_image,
    read_image,
    read_image_bytes,
    sha256_bytes,
)

LIMIT = 10_000_000


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def noise(height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def raw_png(width: int, height: int, bit_depth: int, color_type: int, scanlines: bytes) -> bytes:
    """A PNG written by hand, for what Pillow cannot write (16-bit RGB, lying headers)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(scanlines))
        + png_chunk(b"IEND", b"")
    )


def rejection(data: bytes, **kwargs) -> str:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, **{"max_pixels": LIMIT, **kwargs})
    assert info.value.detail  # always a sentence for humans
    return info.value.reason


class TestRejections:
    def test_empty_file(self):
        assert rejection(b"") == "empty_file"

    def test_text_named_jpg_is_not_an_image(self):
        assert rejection(b"name,identity\nalice.jpg,alice\n") == "not_an_image"

    @pytest.mark.parametrize("progressive", [False, True])
    @pytest.mark.parametrize("keep", [0.98, 0.6, 0.3])
    def test_truncated_jpeg(self, keep: float, progressive: bool):
        data = encode(Image.fromarray(noise()), "JPEG", quality=90, progressive=progressive)
        assert decode_image(data, max_pixels=LIMIT).shape == (40, 48, 3)
        assert rejection(data[: int(len(data) * keep)]) == "truncated"

    @pytest.mark.parametrize("cut", [12, 20, 400])
    def test_truncated_png(self, cut: int):
        """Pillow decodes a PNG missing its last chunks without complaint; we must not."""
        data = encode(Image.fromarray(noise()), "PNG")
        assert rejection(data[:-cut]) == "truncated"

    def test_truncated_webp(self):
        data = encode(Image.fromarray(noise()), "WEBP", quality=80)
        assert rejection(data[: len(data) // 2]) == "truncated"

    def test_too_large_header_is_refused_before_decoding(self):
        """A 50000x50000 header with no pixel data: 'too_large', not 'truncated', proves no decode ran."""
        data = raw_png(50_000, 50_000, 8, 0, b"")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert rejection(data) == "too_large"
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        assert grown_mib < 200  # the 2.5 GB buffer was never allocated

    def test_max_pixels_boundary(self):
        data = encode(Image.fromarray(noise(10, 20)), "PNG")
        assert decode_image(data, max_pixels=200).shape == (10, 20, 3)
        assert rejection(data, max_pixels=199) == "too_large"

    def test_too_small(self):
        data = encode(Image.fromarray(noise(10, 20)), "PNG")
        assert decode_image(data, max_pixels=LIMIT, min_side=10).shape == (10, 20, 3)
        assert rejection(data, min_side=11) == "too_small"

    def test_corrupt_png_checksum(self):
        """Complete length, one flipped bit in the pixel data: the chunk CRC no longer matches."""
        data = bytearray(encode(Image.fromarray(noise()), "PNG"))
        data[data.index(b"IDAT") + 40] ^= 0x01
        assert rejection(bytes(data)) == "corrupt"

    def test_reason_codes_are_checked(self):
        with pytest.raises(ValueError, match="unknown reject reason"):
            ImageRejected("bad", "detail")
        assert str(ImageRejected("corrupt", "broken")) == "corrupt: broken"
        assert set(REJECT_REASONS) >= {"empty_file", "not_an_image", "truncated", "too_large", "too_small"}

    def test_refuses_to_run_when_truncated_images_are_allowed(self, monkeypatch):
        monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
        with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
            decode_image(encode(Image.fromarray(noise()), "PNG"), max_pixels=LIMIT)


class TestPillowGlobalLimit:
    def test_max_pixels_is_the_limit_and_global_state_is_restored(self, monkeypatch):
        """A tiny process-wide Pillow limit neither blocks an allowed image nor gets changed by us."""
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
        data = encode(Image.fromarray(noise(20, 20)), "PNG")  # 400 px > 2 * 50: Pillow alone would refuse
        assert decode_image(data, max_pixels=400).shape == (20, 20, 3)
        assert Image.MAX_IMAGE_PIXELS == 50


class TestModes:
    def test_rgb_png_is_exact(self):
        pixels = noise()
        out = decode_image(encode(Image.fromarray(pixels), "PNG"), max_pixels=LIMIT)
        assert out.dtype == np.uint8 and np.array_equal(out, pixels)

    def test_grayscale(self):
        gray = noise()[:, :, 0]
        out = decode_image(encode(Image.fromarray(gray, "L"), "PNG"), max_pixels=LIMIT)
        assert out.shape == (40, 48, 3)
        assert all(np.array_equal(out[:, :, c], gray) for c in range(3))

    @pytest.mark.parametrize(
        ("cmyk", "rgb"),
        [((0, 255, 255, 0), (255, 0, 0)), ((255, 0, 255, 0), (0, 255, 0)), ((0, 0, 0, 255), (0, 0, 0))],
    )
    def test_cmyk_jpeg(self, cmyk, rgb):
        data = encode(Image.new("CMYK", (32, 24), cmyk), "JPEG", quality=95)
        out = decode_image(data, max_pixels=LIMIT)
        assert out.shape == (24, 32, 3)
        assert np.abs(out.reshape(-1, 3).mean(axis=0) - np.array(rgb)).max() < 12

    def test_16bit_gray_png_is_scaled_not_clipped(self):
        values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)  # 16-bit samples
        out = decode_image(encode(Image.fromarray(values), "PNG"), max_pixels=LIMIT)
        assert out[0, :, 0].tolist() == [0, 1, 128, 255]  # v * 255 / 65535, rounded
        assert np.array_equal(out[:, :, 0], out[:, :, 2])

    def test_16bit_rgb_png(self):
        samples = np.array([[[65535, 32768, 0], [0, 65535, 32768]]], dtype=">u2")  # [1, 2, 3] big-endian
        scanline = b"\x00" + samples.tobytes()  # filter type 0
        out = decode_image(raw_png(2, 1, 16, 2, scanline), max_pixels=LIMIT)
        assert out.tolist() == [[[255, 128, 0], [0, 255, 128]]]

    def test_16bit_out_of_range_int_image_is_unsupported(self):
        data = encode(Image.fromarray(np.array([[0, 70_000]], dtype=np.int32)), "TIFF")
        assert rejection(data) == "unsupported_mode"

    @pytest.mark.parametrize(
        ("values", "expected"), [([0.0, 0.5, 1.0], [0, 128, 255]), ([0.0, 100.0, 300.0], [0, 100, 255])]
    )
    def test_float_image(self, values, expected):
        data = encode(Image.fromarray(np.array([values], dtype=np.float32)), "TIFF")
        assert decode_image(data, max_pixels=LIMIT)[0, :, 1].tolist() == expected

    def test_palette_with_transparency_composites_on_white(self):
        im = Image.new("P", (4, 2))
        im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # 0 = red (to be transparent), 1 = blue
        im.putdata([0, 1, 1, 0, 1, 0, 0, 1])
        out = decode_image(encode(im, "PNG", transparency=0), max_pixels=LIMIT)
        index = np.array([0, 1, 1, 0, 1, 0, 0, 1]).reshape(2, 4)
        assert (out[index == 0] == [255, 255, 255]).all()
        assert (out[index == 1] == [0, 0, 255]).all()

    def test_rgba_composites_on_white(self):
        rgba = np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [200, 100, 0, 128]]], dtype=np.uint8)
        out = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), max_pixels=LIMIT)
        # (c * a + 255 * (255 - a)) / 255, rounded: 200 -> 227.39, 100 -> 177.2, 0 -> 127.0
        assert out[0].tolist() == [[255, 255, 255], [0, 0, 0], [227, 177, 127]]

    def test_gray_alpha(self):
        la = np.zeros((2, 2, 2), dtype=np.uint8)
        la[0, 0] = (50, 255)
        out = decode_image(encode(Image.fromarray(la, "LA"), "PNG"), max_pixels=LIMIT)
        assert out[0, 0].tolist() == [50, 50, 50] and out[1, 1].tolist() == [255, 255, 255]


# EXIF orientation -> the numpy transform a viewer applies to the stored [H, W, 3] array.
ORIENTATIONS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),  # 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


class TestExifOrientation:
    @pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
    def test_every_orientation_matches_the_spec(self, orientation: int):
        pixels = noise(6, 10)
        exif = Image.Exif()
        exif[0x0112] = orientation
        out = decode_image(encode(Image.fromarray(pixels), "PNG", exif=exif.tobytes()), max_pixels=LIMIT)
        assert np.array_equal(out, ORIENTATIONS[orientation](pixels))

    def test_jpeg_orientation_6(self):
        """Stored 40 wide x 20 high, top red / bottom blue; displayed 20 x 40, right red / left blue."""
        stored = np.zeros((20, 40, 3), dtype=np.uint8)
        stored[:10] = (255, 0, 0)
        stored[10:] = (0, 0, 255)
        exif = Image.Exif()
        exif[0x0112] = 6
        out = decode_image(encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes()), max_pixels=LIMIT)
        assert out.shape == (40, 20, 3)
        right, left = out[:, 13:].reshape(-1, 3).mean(axis=0), out[:, :7].reshape(-1, 3).mean(axis=0)
        assert right[0] > 230 and right[2] < 25
        assert left[2] > 230 and left[0] < 25


def _pillow_reference(data: bytes) -> np.ndarray:
    """What Pillow alone makes of a file: full decode, EXIF orientation applied, RGB."""
    from PIL import ImageOps

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def _big_endian_exif(orientation: int) -> bytes:
    """An EXIF block in Motorola byte order (Pillow writes Intel order) holding only the orientation."""
    return b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHIH2x", 0x0112, 3, 1, orientation) \
        + b"\x00\x00\x00\x00"  # fmt: skip


class TestPlainJpegFastPath:
    """Plain JPEGs are decoded by OpenCV from their own marker segments; the pixels must be Pillow's."""

    @pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
    @pytest.mark.parametrize("byte_order", ["intel", "motorola"])
    def test_same_pixels_as_pillow_in_every_orientation(self, orientation: int, byte_order: str):
        if byte_order == "intel":
            exif = Image.Exif()
            exif[0x0112] = orientation
            block = exif.tobytes()
        else:
            block = b"Exif\x00\x00" + _big_endian_exif(orientation)
        data = encode(Image.fromarray(noise(30, 44)), "JPEG", quality=90, exif=block)
        assert _plain_jpeg_header(data) == ((44, 30), orientation)  # the fast path takes it
        assert np.array_equal(decode_image(data, max_pixels=LIMIT), _pillow_reference(data))

    def test_other_jpegs_take_pillows_path_with_the_same_pixels(self):
        image = Image.fromarray(noise(30, 44))
        progressive = encode(image, "JPEG", quality=90, progressive=True)
        grey = encode(image.convert("L"), "JPEG", quality=90)
        cmyk = encode(image.convert("CMYK"), "JPEG", quality=90)
        for data in (progressive, grey, cmyk):
            assert _plain_jpeg_header(data) is None
            assert np.array_equal(decode_image(data, max_pixels=LIMIT), _pillow_reference(data))

    def test_size_limits_come_from_the_frame_header_before_decoding(self):
        data = encode(Image.fromarray(noise(30, 44)), "JPEG", quality=90)
        with pytest.raises(ImageRejected) as info:
            decode_image(data, max_pixels=44 * 30 - 1)
        assert info.value.reason == "too_large" and "44x30" in info.value.detail

    def test_a_truncated_plain_jpeg_gets_pillows_verdict(self):
        data = encode(Image.fromarray(noise(30, 44)), "JPEG", quality=90)
        assert _plain_jpeg_header(data[:-40]) is None
        with pytest.raises(ImageRejected) as info:
            decode_image(data[:-40], max_pixels=LIMIT)
        assert info.value.reason == "truncated"


class TestFiles:
    def test_read_image_and_byte_limit(self, tmp_path: Path):
        path = tmp_path / "a.png"
        data = encode(Image.fromarray(noise()), "PNG")
        path.write_bytes(data)
        assert read_image(path, max_pixels=LIMIT).shape == (40, 48, 3)
        assert read_image_bytes(path, max_bytes=len(data)) == data
        with pytest.raises(ImageRejected) as info:
            read_image(path, max_pixels=LIMIT, max_bytes=len(data) - 1)
        assert info.value.reason == "too_large" and str(len(data)) in info.value.detail

    def test_sha256_bytes(self):
        data = b"faceops"
        assert sha256_bytes(data) == hashlib.sha256(data).hexdigest()
        assert len(sha256_bytes(b"")) == 64
