"""Shard writing (byte-reproducible, sorted, atomic per file), index.json, the safe tar reader, splits."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceops.data.split import SPLITS, assign_split
from faceops.io.shards import (
    ShardError,
    ShardSample,
    iter_tar_samples,
    read_index,
    write_index,
    write_shards,
)
from faceops.labels import sample_id

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def _jpeg(rng: np.random.Generator, side: int = 16) -> bytes:
    ok, buf = cv2.imencode(".jpg", rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


def _samples(n: int, seed: int = 0) -> list[ShardSample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        key = sample_id("unit", f"img/{i}.jpg")
        meta = {"id": key, "source": "unit", "identity": f"person_{i % 4}", "age": 20.5 + i, "expression": None,
                "landmarks": [[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]], "name": "Zoë"}
        out.append(ShardSample(key=key, jpg=_jpeg(rng), meta=meta))
    return out


def _tar_with(members: list[tuple[tarfile.TarInfo, bytes]], path: Path) -> Path:
    with tarfile.open(path, "w") as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _member_ends(path: Path) -> list[int]:
    """Byte offset just after each member's padded data."""
    with tarfile.open(path) as tf:
        return [m.offset_data + -(-m.size // 512) * 512 for m in tf.getmembers()]


class TestWriteShards:
    def test_bytes_identical_across_runs_and_input_orders(self, tmp_path):
        samples = _samples(11)
        a = write_shards(samples, tmp_path / "a", split="train", maxcount=4)
        b = write_shards(list(reversed(samples)), tmp_path / "b", split="train", maxcount=4)
        assert a == b
        for info in a:
            assert (tmp_path / "a" / info.name).read_bytes() == (tmp_path / "b" / info.name).read_bytes()

    def test_bytes_are_what_webdatasets_tar_writer_writes(self, tmp_path):
        """faceops writes shards with tarfile (no webdataset import); the format must stay webdataset's."""
        import webdataset as wds

        samples = sorted(_samples(5), key=lambda s: s.key)
        (info,) = write_shards(samples, tmp_path, split="train", maxcount=8)
        buffer = io.BytesIO()
        with wds.TarWriter(buffer, user="faceops", group="faceops", mode=0o444, mtime=0, compress=False,
                           encoder=False) as writer:  # fmt: skip
            for sample in samples:
                meta = json.dumps(sample.meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                writer.write({"__key__": sample.key, "jpg": sample.jpg, "json": meta.encode("utf-8")})
        assert (tmp_path / info.name).read_bytes() == buffer.getvalue()

    def test_maxcount_names_and_sorted_keys(self, tmp_path):
        samples = _samples(23)
        infos = write_shards(samples, tmp_path, split="val", maxcount=5)
        assert [i.name for i in infos] == [f"val-{n:06d}.tar" for n in range(5)]
        assert [i.samples for i in infos] == [5, 5, 5, 5, 3]
        assert sorted(p.name for p in tmp_path.iterdir()) == [i.name for i in infos]  # no temp files left
        keys = [s["__key__"] for i in infos for s in iter_tar_samples(tmp_path / i.name)]
        assert keys == sorted(s.key for s in samples)
        assert [(i.first_key, i.last_key) for i in infos] == [(keys[k], keys[min(k + 4, 22)]) for k in range(0, 23, 5)]
        assert [i.nbytes for i in infos] == [(tmp_path / i.name).stat().st_size for i in infos]

    def test_member_metadata_and_payloads(self, tmp_path):
        samples = {s.key: s for s in _samples(3)}
        (info,) = write_shards(samples.values(), tmp_path, split="train", maxcount=10)
        with tarfile.open(tmp_path / info.name) as tf:
            members = tf.getmembers()
            assert [m.name for m in members] == [f"{k}.{ext}" for k in sorted(samples) for ext in ("jpg", "json")]
            for m in members:
                assert (m.mtime, m.uid, m.gid, m.mode, m.uname, m.gname) == (0, 0, 0, 0o444, "faceops", "faceops")
                assert m.isreg()
                data = tf.extractfile(m).read()
                key, ext = m.name.split(".")
                if ext == "jpg":
                    assert data == samples[key].jpg  # stored as given, not re-encoded
                else:
                    assert json.loads(data) == samples[key].meta
                    assert data == json.dumps(samples[key].meta, sort_keys=True, separators=(",", ":"),
                                              ensure_ascii=False).encode()

    @pytest.mark.parametrize("key", ["unit_ab.cd", "a/b", "", "x" * 96, "ünit"])
    def test_bad_keys_rejected(self, tmp_path, key):
        sample = ShardSample(key=key, jpg=_samples(1)[0].jpg, meta={})
        with pytest.raises(ValueError, match="no dots"):
            write_shards([sample], tmp_path, split="train", maxcount=2)

    def test_bad_inputs_rejected(self, tmp_path):
        (s,) = _samples(1)
        with pytest.raises(ValueError, match="appears twice"):
            write_shards([s, s], tmp_path, split="train", maxcount=2)
        with pytest.raises(ValueError, match="JPEG bytes"):
            write_shards([ShardSample(s.key, b"\x89PNG....", {})], tmp_path, split="train", maxcount=2)
        with pytest.raises(ValueError, match="must equal the key"):
            write_shards([ShardSample(s.key, s.jpg, {"id": "other"})], tmp_path, split="train", maxcount=2)
        with pytest.raises(ValueError, match="JSON"):
            write_shards([ShardSample(s.key, s.jpg, {"age": float("nan")})], tmp_path, split="train", maxcount=2)
        with pytest.raises(ValueError, match="maxcount"):
            write_shards([s], tmp_path, split="train", maxcount=0)
        with pytest.raises(ValueError, match="split name"):
            write_shards([s], tmp_path, split="Train-1", maxcount=1)
        assert list(tmp_path.iterdir()) == []

    def test_refuses_to_mix_with_existing_shards(self, tmp_path):
        write_shards(_samples(2), tmp_path, split="train", maxcount=1)
        with pytest.raises(FileExistsError, match="train-000000.tar"):
            write_shards(_samples(2, seed=1), tmp_path, split="train", maxcount=1)

    def test_empty_split_writes_nothing(self, tmp_path):
        assert write_shards([], tmp_path / "out", split="test", maxcount=3) == []


class TestIndex:
    def test_round_trip_and_validation(self, tmp_path):
        infos = write_shards(_samples(5), tmp_path, split="train", maxcount=2)
        index = {"format": 1, "source": "unit", "samples": 5,
                 "splits": {"train": {"shards": [i.name for i in infos], "samples": 5, "identities": 4}}}
        write_index(tmp_path, index)
        assert read_index(tmp_path) == index
        with pytest.raises(ValueError, match="add up"):
            write_index(tmp_path, {**index, "samples": 6})
        missing = {**index, "splits": {"train": {"shards": ["train-000009.tar"], "samples": 5, "identities": 4}}}
        with pytest.raises(ValueError, match="train-000009.tar"):
            write_index(tmp_path, missing)
        (tmp_path / "index.json").write_text(json.dumps({**index, "format": 2}))
        with pytest.raises(ValueError, match="format"):
            read_index(tmp_path)


class TestSafeReader:
    def test_round_trip(self, tmp_path):
        samples = _samples(6)
        infos = write_shards(samples, tmp_path, split="train", maxcount=6)
        read = list(iter_tar_samples(tmp_path / infos[0].name))
        assert [r["__key__"] for r in read] == sorted(s.key for s in samples)
        by_key = {s.key: s for s in samples}
        for r in read:
            assert set(r) == {"__key__", "jpg", "json"}
            assert r["jpg"] == by_key[r["__key__"]].jpg
            assert json.loads(r["json"]) == by_key[r["__key__"]].meta

    def test_truncation_anywhere_raises_naming_the_shard(self, tmp_path):
        (info,) = write_shards(_samples(3), tmp_path, split="train", maxcount=3)
        path = tmp_path / info.name
        data = path.read_bytes()
        ends = _member_ends(path)
        # cut inside a header, inside data, exactly at each member boundary, and before the end blocks
        cuts = [0, 100, ends[0] + 600, *ends, ends[-1] + 100]
        for cut in cuts:
            broken = tmp_path / f"cut{cut}.tar"
            broken.write_bytes(data[:cut])
            with pytest.raises(ShardError, match=f"cut{cut}.tar.*(truncated|re-create)"):
                list(iter_tar_samples(broken))

    @pytest.mark.parametrize(
        ("member", "reason"),
        [
            pytest.param(tarfile.TarInfo("../evil.jpg"), r"'\.\.' path component", id="dotdot"),
            pytest.param(tarfile.TarInfo("/etc/evil.jpg"), "absolute path", id="absolute"),
            pytest.param(tarfile.TarInfo("dir/k.jpg"), "nested path", id="nested"),
            pytest.param(tarfile.TarInfo("noext"), "<key>.<ext>", id="no-extension"),
        ],
    )
    def test_unsafe_names_refused(self, tmp_path, member, reason):
        path = _tar_with([(member, b"\xff\xd8\xff")], tmp_path / "bad.tar")
        with pytest.raises(ShardError, match=f"bad.tar.*{reason}"):
            list(iter_tar_samples(path))

    @pytest.mark.parametrize(
        ("kind", "label"),
        [(tarfile.SYMTYPE, "symbolic link"), (tarfile.LNKTYPE, "hard link"), (tarfile.DIRTYPE, "directory"),
         (tarfile.CHRTYPE, "character device"), (tarfile.FIFOTYPE, "FIFO")],
    )
    def test_non_regular_members_refused(self, tmp_path, kind, label):
        info = tarfile.TarInfo("k.jpg")
        info.type = kind
        info.linkname = "/etc/passwd"
        path = _tar_with([(info, b"")], tmp_path / "links.tar")
        with pytest.raises(ShardError, match=f"links.tar.*{label}"):
            list(iter_tar_samples(path))

    def test_extension_headers_and_corruption_refused(self, tmp_path):
        path = _tar_with([(tarfile.TarInfo("k" * 120 + ".jpg"), b"x")], tmp_path / "pax.tar")
        with pytest.raises(ShardError, match="pax extended header"):
            list(iter_tar_samples(path))
        (info,) = write_shards(_samples(1), tmp_path / "ok", split="train", maxcount=1)
        data = bytearray((tmp_path / "ok" / info.name).read_bytes())
        data[124] = ord("7") if data[124] != ord("7") else ord("6")  # change the size digits, not the checksum
        (tmp_path / "corrupt.tar").write_bytes(bytes(data))
        with pytest.raises(ShardError, match="corrupt.tar.*checksum"):
            list(iter_tar_samples(tmp_path / "corrupt.tar"))

    def test_split_or_repeated_members_refused(self, tmp_path):
        members = [(tarfile.TarInfo(n), b"1") for n in ("a.jpg", "b.jpg", "a.json")]
        with pytest.raises(ShardError, match="two separate places"):
            list(iter_tar_samples(_tar_with(members, tmp_path / "split.tar")))
        members = [(tarfile.TarInfo(n), b"1") for n in ("a.jpg", "a.jpg")]
        with pytest.raises(ShardError, match="appears twice"):
            list(iter_tar_samples(_tar_with(members, tmp_path / "twice.tar")))


class TestAssignSplit:
    def test_deterministic_and_identity_disjoint(self):
        identities = [f"person_{i}" for i in range(200)]
        first = {name: assign_split(name, FRACTIONS) for name in identities}
        # every image of an identity gets the identity's split, whatever the order they come in
        for name in reversed(identities * 3):
            assert assign_split(name, FRACTIONS) == first[name]

    def test_independent_of_python_hash_seed(self):
        code = ("from faceops.data.split import assign_split as a; "
                "print([a(f'p{i}', {'train': .5, 'test': .5}) for i in range(50)])")
        outs = {
            subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                           capture_output=True, text=True, check=True).stdout
            for seed in ("1", "2")
        }  # fmt: skip
        assert len(outs) == 1

    def test_fractions_respected_over_many_identities(self):
        counts = Counter(assign_split(f"id{i:05d}", FRACTIONS) for i in range(10_000))
        for name, fraction in FRACTIONS.items():
            assert abs(counts[name] / 10_000 - fraction) < 0.015, counts  # binomial sd <= 0.005

    def test_salt_reshuffles(self):
        names = [f"id{i}" for i in range(2000)]
        plain = [assign_split(n, FRACTIONS) for n in names]
        salted = [assign_split(n, FRACTIONS, salt="v2") for n in names]
        changed = sum(a != b for a, b in zip(plain, salted)) / len(names)
        # independent draws disagree with probability 1 - (0.7^2 + 0.1^2 + 0.2^2) = 0.46
        assert 0.40 < changed < 0.52
        assert Counter(salted)["train"] / len(names) == pytest.approx(0.7, abs=0.04)

    def test_zero_fraction_and_missing_names(self):
        got = {assign_split(f"id{i}", {"train": 0.5, "test": 0.5}) for i in range(500)}
        assert got == {"train", "test"}
        assert {assign_split(f"id{i}", {"val": 1.0}) for i in range(50)} == {"val"}
        assert set(SPLITS) == {"train", "val", "test"}

    @pytest.mark.parametrize(
        ("identity", "fractions", "error", "match"),
        [
            ("a", {"train": 0.5, "val": 0.4}, ValueError, "sum to 1"),
            ("a", {"train": 1.2, "val": -0.2}, ValueError, r"\[0, 1\]"),
            ("a", {"train": 0.5, "holdout": 0.5}, ValueError, "holdout"),
            (None, FRACTIONS, TypeError, "unlabeled"),
            ("", FRACTIONS, ValueError, "non-empty"),
        ],
    )
    def test_invalid_inputs(self, identity, fractions, error, match):
        with pytest.raises(error, match=match):
            assign_split(identity, fractions)


def test_relabelled_shards_carry_new_labels_and_keep_images(tmp_path: Path):
    from faceops.data.relabel import relabel_samples, write_relabelled_shards

    samples = [ShardSample(f"s_{i}", b"\xff\xd8\xff" + bytes([i]) * 10, {"id": f"s_{i}", "source": "s", "identity": f"p{i % 2}", "age": i})
               for i in range(6)]  # fmt: skip
    infos = write_shards(samples, tmp_path / "in", split="test", maxcount=4)
    urls = [tmp_path / "in" / info.name for info in infos]
    updates = {"s_1": {"identity": "c0", "pseudo_confidence": 0.9}, "s_4": {"identity": "c0", "pseudo_confidence": 0.5}}
    out = list(relabel_samples(urls, updates))
    assert [s.key for s in out] == ["s_1", "s_4"]
    assert out[0].meta == {"id": "s_1", "source": "s", "identity": "c0", "age": 1, "pseudo_confidence": 0.9}
    assert out[1].jpg == b"\xff\xd8\xff" + bytes([4]) * 10
    first = write_relabelled_shards(urls, updates, tmp_path / "a", split="train", maxcount=10)
    again = write_relabelled_shards(urls, updates, tmp_path / "b", split="train", maxcount=10)
    assert (tmp_path / "a" / first[0].name).read_bytes() == (tmp_path / "b" / again[0].name).read_bytes()
    with pytest.raises(KeyError, match="s_99"):
        list(relabel_samples(urls, {"s_99": {"identity": "x"}}))
