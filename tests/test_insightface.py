"""insightface's formats: safe .bin loading (faceops.io.verification_bin) and MXNet RecordIO (faceops.io.recordio)."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import struct
import subprocess

import numpy as np
import pytest
from PIL import Image

from faceops.io.recordio import RECORDIO_MAGIC, iter_recordio, recordio_to_samples, write_recordio
from faceops.io.verification_bin import UnsafeFileError, load_verification_bin

MAGIC = struct.pack("<I", RECORDIO_MAGIC)


def _image(fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


IMAGES = [_image("JPEG", 0), _image("PNG", 1), _image("JPEG", 2), _image("PNG", 3)]
ISSAME = [True, False]


# --------------------------------------------------------------------------------------------------
# .bin verification sets
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_bin_round_trip_plain_lists(tmp_path, protocol):
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps((IMAGES, ISSAME), protocol=protocol))
    bins, issame = load_verification_bin(path)
    assert bins == IMAGES
    assert issame.dtype == bool and issame.tolist() == ISSAME


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_bin_round_trip_numpy_bins_and_issame(tmp_path, protocol):
    path = tmp_path / "cfp.bin"
    arrays = [np.frombuffer(b, dtype=np.uint8).copy() for b in IMAGES]
    path.write_bytes(pickle.dumps((arrays, np.array(ISSAME)), protocol=protocol))
    bins, issame = load_verification_bin(path)
    assert bins == IMAGES and issame.tolist() == ISSAME
    path.write_bytes(pickle.dumps((IMAGES, [np.True_, np.False_]), protocol=protocol))
    assert load_verification_bin(path)[1].tolist() == ISSAME


def test_bin_written_by_python2_loads_str_as_bytes(tmp_path):
    # Python 2 pickles its byte strings as BINSTRING ('T' + 4-byte length); Python 3 cannot write that.
    body = b"".join(b"T" + struct.pack("<i", len(b)) + b for b in IMAGES)
    data = b"\x80\x02(](" + body + b"e](\x88\x89et."
    (tmp_path / "agedb.bin").write_bytes(data)
    bins, issame = load_verification_bin(tmp_path / "agedb.bin")
    assert bins == IMAGES and issame.tolist() == ISSAME


class _Payload:
    """Unpickling this object calls ``func(*args)``: the classic pickle attack."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _attacks(marker):
    return {
        "os.system": _Payload(os.system, (f"touch {marker}",)),
        "builtins.exec": _Payload(builtins.exec, (f"open({str(marker)!r}, 'w').close()",)),
        "subprocess.call": _Payload(subprocess.call, (["touch", str(marker)],)),
    }


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("attack", ["os.system", "builtins.exec", "subprocess.call"])
def test_malicious_bin_is_refused_and_never_executed(tmp_path, protocol, attack):
    marker = tmp_path / "pwned"
    payload = _attacks(marker)[attack]
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([IMAGES[0], payload], [True]), protocol=protocol))
    with pytest.raises(UnsafeFileError, match="refused") as info:
        load_verification_bin(path)
    assert f".{payload.func.__name__}'" in str(info.value)  # names what was refused, e.g. 'posix.system'
    assert not marker.exists()


def test_the_attack_payload_is_real(tmp_path):
    """Control: plain pickle.loads does run the payload the loader refuses."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_attacks(marker)["builtins.exec"]))
    assert marker.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # _codecs.encode is allowed only as encode(text, "latin1"): how Python 3 pickles bytes at protocol 2.
        (b"\x80\x02(c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R]\x88\x85t.", "rot13"),
        # numpy.dtype is allowed for u1/b1 only; an object dtype could carry arbitrary objects.
        (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R.", "dtype 'O8' refused"),
        # BUILD on an allowed callable would let the file set attributes on it.
        (b"\x80\x02c_codecs\nencode\n}X\x01\x00\x00\x00aK\x01sb.", "BUILD"),
    ],
    ids=["codecs-rot13", "object-dtype", "build-on-callable"],
)
def test_allowed_globals_are_used_only_as_intended(tmp_path, data, message):
    (tmp_path / "odd.bin").write_bytes(data)
    with pytest.raises(UnsafeFileError, match=message) as info:
        load_verification_bin(tmp_path / "odd.bin")
    assert str(info.value).startswith(str(tmp_path / "odd.bin"))


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([IMAGES[:3], ISSAME], "3 images for 2 pairs"),
        ((IMAGES, ISSAME, None), "pair"),
        ((IMAGES[:2] + [b"GIF89a..."] + IMAGES[3:], ISSAME), r"bins\[2\] is not a JPEG or PNG"),
        ((IMAGES, ["yes", "no"]), "booleans"),
        ((IMAGES, np.array([1, 0], dtype=np.int64)), "refused"),  # int64 arrays are not accepted
        (([], []), "at least one pair"),
    ],
)
def test_bin_structure_is_validated(tmp_path, obj, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(ValueError, match=message):
        load_verification_bin(path)


def test_bin_that_is_not_a_pickle(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="not a readable verification .bin"):
        load_verification_bin(tmp_path / "junk.bin")


# --------------------------------------------------------------------------------------------------
# RecordIO
# --------------------------------------------------------------------------------------------------


def _parts(rec_bytes: bytes) -> list[tuple[int, int]]:
    """(cflag, length) of every part in a .rec file, walking the raw bytes."""
    out, pos = [], 0
    while pos < len(rec_bytes):
        magic, lrecord = struct.unpack_from("<II", rec_bytes, pos)
        assert magic == RECORDIO_MAGIC
        length = lrecord & ((1 << 29) - 1)
        out.append((lrecord >> 29, length))
        pos += 8 + (length + 3) // 4 * 4
    return out


def test_single_record_layout_by_hand(tmp_path):
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, [(7, 3.0, b"abcde")])
    header = struct.pack("<IfQQ", 0, 3.0, 7, 0)
    body = header + b"abcde"  # 29 bytes -> 3 zero bytes of padding
    assert rec.read_bytes() == MAGIC + struct.pack("<I", len(body)) + body + b"\0\0\0"
    assert idx.read_text() == "7\t0\n"


def test_recordio_round_trip_with_multipart_and_label_arrays(tmp_path):
    # Record 2's data (24-byte header + payload) holds the magic at aligned offsets 24 + 8 and 24 + 16,
    # and once unaligned: the writer splits it into 3 parts (cflag 1, 2, 3) and drops the two magics.
    tricky = b"\xff\xd8\xff\xe0" + b"abcd" + MAGIC + b"efgh" + MAGIC + b"x" + MAGIC + b"yz"
    records = [
        (0, 5.0, IMAGES[0]),
        (1, [1.0, 2.5, -3.0], IMAGES[1]),  # flag 3: three float32 labels after the header
        (2, 4.0, tricky),
        (3, 0.0, b""),
    ]
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, records)
    flags = [cflag for cflag, _ in _parts(rec.read_bytes())]
    assert flags == [0, 0, 1, 2, 3, 0]
    got = list(iter_recordio(rec, idx))
    assert [k for k, _, _ in got] == [0, 1, 2, 3]
    assert [p for _, _, p in got] == [IMAGES[0], IMAGES[1], tricky, b""]
    assert got[0][1] == 5.0 and isinstance(got[0][1], float)
    np.testing.assert_array_equal(got[1][1], np.array([1.0, 2.5, -3.0], dtype=np.float32))
    offsets = [int(line.split("\t")[1]) for line in idx.read_text().splitlines()]
    assert offsets[0] == 0 and offsets == sorted(offsets) and all(o % 4 == 0 for o in offsets)


def test_magic_at_the_very_end_gives_an_empty_last_part(tmp_path):
    rec, idx = tmp_path / "t.rec", tmp_path / "t.idx"
    write_recordio(rec, idx, [(0, 1.0, b"abcd" + MAGIC)])
    assert _parts(rec.read_bytes()) == [(1, 28), (3, 0)]
    assert list(iter_recordio(rec, idx))[0][2] == b"abcd" + MAGIC


def test_truncated_rec_names_the_offset(tmp_path):
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, [(0, 1.0, IMAGES[0]), (1, 2.0, IMAGES[1])])
    second = int(idx.read_text().splitlines()[1].split("\t")[1])
    rec.write_bytes(rec.read_bytes()[:-10])
    reader = iter_recordio(rec, idx)
    assert next(reader)[2] == IMAGES[0]  # the intact first record still reads
    with pytest.raises(ValueError, match=rf"truncated file: record data at offset {second + 8}"):
        next(reader)


def test_bad_magic_and_bad_offsets_name_the_offset(tmp_path):
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, [(0, 1.0, IMAGES[0])])
    with pytest.raises(ValueError, match="bad magic .* at offset 4"):
        idx.write_text("0\t4\n")
        list(iter_recordio(rec, idx))
    with pytest.raises(ValueError, match="offset 99999 is outside the file"):
        idx.write_text("0\t99999\n")
        list(iter_recordio(rec, idx))
    with pytest.raises(ValueError, match="train.idx:1"):
        idx.write_text("zero\t0\n")
        list(iter_recordio(rec, idx))


def _insightface_set(tmp_path, image_labels):
    """train.rec/.idx laid out as insightface does: header, images, then one record per identity."""
    n_images = len(image_labels)
    identities = sorted({int(np.atleast_1d(lab)[0]) for lab in image_labels})
    first_id_key = n_images + 1
    records = [(0, [float(first_id_key), float(first_id_key + len(identities))], b"")]
    records += [(i + 1, lab, IMAGES[i % len(IMAGES)]) for i, lab in enumerate(image_labels)]
    for j, ident in enumerate(identities):
        keys = [i + 1 for i, lab in enumerate(image_labels) if int(np.atleast_1d(lab)[0]) == ident]
        records.append((first_id_key + j, [float(keys[0]), float(keys[-1] + 1)], b""))
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, records)
    return rec, idx


def test_recordio_to_samples_follows_the_insightface_header(tmp_path):
    labels = [0.0, 0.0, 1.0, [2.0, 7.0], 2.0]  # one image with a label array: its first value counts
    rec, idx = _insightface_set(tmp_path, labels)
    samples = list(recordio_to_samples(rec, idx))
    assert [ident for ident, _ in samples] == ["0", "0", "1", "2", "2"]
    assert [img for _, img in samples] == [IMAGES[i % 4] for i in range(5)]


def test_recordio_to_samples_without_header_reads_every_record(tmp_path):
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    write_recordio(rec, idx, [(0, 3.0, IMAGES[0]), (5, 1.0, IMAGES[1])])
    assert list(recordio_to_samples(rec, idx)) == [("3", IMAGES[0]), ("1", IMAGES[1])]


def test_recordio_to_samples_errors(tmp_path):
    rec, idx = _insightface_set(tmp_path, [0.0, 1.0])
    idx.write_text("\n".join(line for line in idx.read_text().splitlines() if not line.startswith("2\t")))
    with pytest.raises(ValueError, match="missing"):
        list(recordio_to_samples(rec, idx))
    write_recordio(rec, idx, [(1, 2.5, IMAGES[0])])
    with pytest.raises(ValueError, match="non-negative integer"):
        list(recordio_to_samples(rec, idx))


def test_writer_refuses_repeated_keys_and_leaves_no_files(tmp_path):
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    with pytest.raises(ValueError, match="distinct"):
        write_recordio(rec, idx, [(1, 0.0, b"a"), (1, 0.0, b"b")])
    assert list(tmp_path.iterdir()) == []
