"""Tests for faceops.ingest (the layouts, quarantine, counts) and faceops.io.jsonl."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceops.ingest import QUARANTINE_REASONS, IngestResult, scan_source
from faceops.io.atomic import atomic_write_bytes, atomic_write_text
from faceops.io.jsonl import read_jsonl, write_jsonl
from faceops.labels import CELEBA_ATTRIBUTES, LANDMARK_COLUMNS, sample_id

LIMITS = {"max_pixels": 1_000_000, "max_file_bytes": 200_000, "min_side": 16}


def image_bytes(seed: int, size: tuple[int, int] = (48, 40), fmt: str = "JPEG", **kwargs) -> bytes:
    """Distinct random content per seed, so only deliberate copies are duplicates."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **kwargs)
    return buf.getvalue()


def blank_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, "PNG")
    return buf.getvalue()


def put(root: Path, relpath: str, data: bytes) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def scan(root: Path, fmt: str, **kwargs) -> IngestResult:
    result = scan_source(root, "src", fmt, **{**LIMITS, **kwargs})
    assert_consistent(result)
    return result


def assert_consistent(result: IngestResult) -> None:
    """Counts add up, every entry is in exactly one list, and both lists are sorted as the contract says."""
    counts = result.counts
    assert set(counts) == {"seen", "accepted", *QUARANTINE_REASONS}
    assert counts["accepted"] == len(result.rows)
    assert counts["accepted"] + sum(counts[r] for r in QUARANTINE_REASONS) == counts["seen"]
    assert sum(counts[r] for r in QUARANTINE_REASONS) == len(result.quarantine)
    paths = [row["path"] for row in result.rows] + [row["path"] for row in result.quarantine]
    assert len(paths) == len(set(paths))
    assert [row["id"] for row in result.rows] == sorted(row["id"] for row in result.rows)
    assert [row["path"] for row in result.quarantine] == sorted(row["path"] for row in result.quarantine)
    for row in result.quarantine:
        assert set(row) == {"source", "path", "stage", "reason", "detail"}
        assert row["stage"] == "ingest" and row["reason"] in QUARANTINE_REASONS and row["detail"]


def reasons(result: IngestResult) -> dict[str, str]:
    return {row["path"]: row["reason"] for row in result.quarantine}


def by_path(result: IngestResult) -> dict[str, dict]:
    return {row["path"]: row for row in result.rows}


def exif_rotated_jpeg(width: int, height: int, seed: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    return image_bytes(seed, (width, height), exif=exif.tobytes())


# ------------------------------------------------------------------------------------ imagefolder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    put(root, "alice/a.jpg", image_bytes(1))
    put(root, "alice/b.png", image_bytes(2, fmt="PNG"))
    put(root, "alice/2020/c.jpg", image_bytes(3))  # deeper folders keep the first folder as identity
    put(root, "bob/dup.jpg", image_bytes(1))  # same bytes as alice/a.jpg
    put(root, "bob/rotated.jpg", exif_rotated_jpeg(60, 30, seed=4))
    put(root, "bob/empty.jpg", b"")
    put(root, "bob/text.jpg", b"this is not an image\n")
    put(root, "bob/truncated.jpg", image_bytes(5)[:-300])
    put(root, "bob/tiny.png", image_bytes(6, (8, 30), fmt="PNG"))
    put(root, "bob/noisy.bmp", image_bytes(7, (300, 300), fmt="BMP"))  # 270 kB > max_file_bytes
    put(root, "carol/huge.png", blank_png(1001, 1000))  # one row over max_pixels, a few kB on disk
    put(root, "stray.jpg", image_bytes(9))
    put(root, ".hidden.jpg", image_bytes(10))
    put(root, "alice/.DS_Store", b"\0\0")
    put(root, ".git/objects/x", b"blob")
    return root


def test_imagefolder_sorts_every_file_into_rows_or_quarantine(folder: Path):
    result = scan(folder, "imagefolder")
    assert reasons(result) == {
        "bob/dup.jpg": "duplicate",
        "bob/empty.jpg": "empty_file",
        "bob/text.jpg": "not_an_image",
        "bob/truncated.jpg": "truncated",
        "bob/tiny.png": "too_small",
        "bob/noisy.bmp": "too_large",
        "carol/huge.png": "too_large",
        "stray.jpg": "no_identity",
    }
    rows = by_path(result)
    assert sorted(rows) == ["alice/2020/c.jpg", "alice/a.jpg", "alice/b.png", "bob/rotated.jpg"]
    assert result.counts["seen"] == 12  # hidden files and folders are not scanned
    assert {path: row["labels"] for path, row in rows.items()} == {
        "alice/2020/c.jpg": {"identity": "alice"},
        "alice/a.jpg": {"identity": "alice"},
        "alice/b.png": {"identity": "alice"},
        "bob/rotated.jpg": {"identity": "bob"},
    }
    assert (rows["alice/a.jpg"]["width"], rows["alice/a.jpg"]["height"]) == (48, 40)
    assert (rows["bob/rotated.jpg"]["width"], rows["bob/rotated.jpg"]["height"]) == (30, 60)  # displayed size
    for path, row in rows.items():
        assert row["id"] == sample_id("src", path) and row["source"] == "src"
        assert row["sha256"] == hashlib.sha256((folder / path).read_bytes()).hexdigest()
    duplicate = next(row for row in result.quarantine if row["path"] == "bob/dup.jpg")
    assert "alice/a.jpg" in duplicate["detail"]


def test_unlabeled_layout_keeps_every_image_without_identity(folder: Path):
    result = scan(folder, "unlabeled")
    rows = by_path(result)
    assert "stray.jpg" in rows and "alice/a.jpg" in rows  # top-level files and nested ones alike
    assert all(row["labels"] == {"identity": None} for row in rows.values())
    assert reasons(result)["bob/dup.jpg"] == "duplicate" and "stray.jpg" not in reasons(result)
    assert result.counts["accepted"] + len(result.quarantine) == result.counts["seen"]


def test_result_is_deterministic_and_independent_of_workers(folder: Path, tmp_path: Path):
    first, again, threaded = (scan(folder, "imagefolder", workers=w) for w in (1, 1, 3))
    assert first == again == threaded
    write_jsonl(tmp_path / "a.jsonl", first.rows + first.quarantine)
    write_jsonl(tmp_path / "b.jsonl", threaded.rows + threaded.quarantine)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_progress_adds_up_to_seen(folder: Path):
    steps: list[int] = []
    result = scan(folder, "imagefolder", progress=steps.append)
    assert sum(steps) == result.counts["seen"] and all(step > 0 for step in steps)


def test_symlinks(tmp_path: Path):
    root = tmp_path / "raw"
    put(root, "alice/a.jpg", image_bytes(1))
    outside = put(tmp_path, "elsewhere/secret.jpg", image_bytes(2))
    (root / "alice" / "z_link.jpg").symlink_to(root / "alice" / "a.jpg")  # inside: a duplicate of its target
    (root / "alice" / "out.jpg").symlink_to(outside)
    (root / "bob").symlink_to(root / "alice", target_is_directory=True)
    (root / "carol").mkdir()
    (root / "carol" / "broken.jpg").symlink_to(root / "nowhere.jpg")
    result = scan(root, "imagefolder")
    assert sorted(by_path(result)) == ["alice/a.jpg"]
    assert reasons(result) == {
        "alice/out.jpg": "outside_root",
        "alice/z_link.jpg": "duplicate",
        "bob": "symlink_dir",
        "carol/broken.jpg": "unreadable",
    }


def test_non_utf8_file_name_is_quarantined_not_fatal(tmp_path: Path, folder: Path):
    try:
        put(folder, os.fsdecode(b"alice/x\xff.jpg"), image_bytes(30))
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    result = scan(folder, "imagefolder")
    assert reasons(result)["alice/x\\xff.jpg"] == "bad_filename"
    write_jsonl(tmp_path / "q.jsonl", result.quarantine)  # the row itself is writable UTF-8


def test_bad_arguments(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        scan_source(tmp_path / "absent", "src", "imagefolder", **LIMITS)
    with pytest.raises(ValueError, match="source name"):
        scan_source(tmp_path, "My.Source", "imagefolder", **LIMITS)
    with pytest.raises(ValueError, match="unknown source format"):
        scan_source(tmp_path, "src", "voc", **LIMITS)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- labels_csv


def write_csv(root: Path, lines: list[str]) -> None:
    put(root, "labels.csv", ("\n".join(lines) + "\n").encode("utf-8"))


LANDMARKS_OK = "10,12,30,12,20,20,12,30,28,30"  # inside a 48 x 40 image
HEADER = "path,identity,expression,age,Male,Smiling,group," + ",".join(LANDMARK_COLUMNS)


@pytest.fixture
def csv_root(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    for i, name in enumerate(["a", "b", "c", "d", "e", "f", "g", "h"]):
        put(root, f"img/{name}.jpg", image_bytes(i))
    put(root, "img/rot.jpg", exif_rotated_jpeg(80, 40, seed=20))  # stored 80 x 40, displayed 40 wide x 80 high
    put(root, "img/extra.jpg", image_bytes(21))
    put(root, "notes.txt", b"not listed anywhere\n")
    write_csv(
        root,
        [
            HEADER,
            f"img/a.jpg,alice,happiness,31.5,1,-1,g1,{LANDMARKS_OK}",
            "./img/b.jpg,alice,0,,0,1,," + "," * 9,
            "img/c.jpg,bob,9,20,1,0,g2," + "," * 9,
            "img/d.jpg,bob,2,-3,1,0,g2," + "," * 9,
            "img/e.jpg,bob,2,20,2,0,g2," + "," * 9,
            "img/f.jpg,carol,2,20,1,0,g2,10,12,30,12,20,20,12,30,28,",
            "img/g.jpg,carol,2,20,1,0,g2,10,12,30,12,20,20,12,30,28,45",  # y = 45 > height 40
            "img/rot.jpg,carol,,,,,,30,70,10,70,20,60,30,5,10,5",  # fine only in displayed coordinates
            "img/missing.jpg,dave,1,40,1,1,g3," + "," * 9,
            "../escape.jpg,dave,1,40,1,1,g3," + "," * 9,
            "",
        ],
    )
    return root


def test_labels_csv(csv_root: Path):
    result = scan(csv_root, "labels_csv")
    found = reasons(result)
    assert found == {
        "img/c.jpg": "bad_label",  # expression 9
        "img/d.jpg": "bad_label",  # negative age
        "img/e.jpg": "bad_label",  # attribute 2
        "img/f.jpg": "bad_label",  # 9 of 10 landmarks
        "img/g.jpg": "bad_label",  # landmark outside the image
        "img/h.jpg": "unlabeled",
        "img/extra.jpg": "unlabeled",
        "notes.txt": "unlabeled",
        "img/missing.jpg": "missing_file",
        "../escape.jpg": "outside_root",
    }
    details = {row["path"]: row["detail"] for row in result.quarantine}
    assert "'9'" in details["img/c.jpg"] and "line 4" in details["img/c.jpg"]
    assert "outside" in details["img/g.jpg"]
    rows = by_path(result)
    assert sorted(rows) == ["img/a.jpg", "img/b.jpg", "img/rot.jpg"]
    expected_keys = {"identity", "expression", "age", "Male", "Smiling", "group", "landmarks"}
    assert all(set(row["labels"]) == expected_keys for row in rows.values())
    assert rows["img/a.jpg"]["labels"] == {
        "identity": "alice",
        "expression": 1,  # "happiness"
        "age": 31.5,
        "Male": 1,
        "Smiling": 0,  # CelebA -1
        "group": "g1",
        "landmarks": [[10.0, 12.0], [30.0, 12.0], [20.0, 20.0], [12.0, 30.0], [28.0, 30.0]],
    }
    assert rows["img/b.jpg"]["labels"] == {
        "identity": "alice", "expression": 0, "age": None, "Male": 0, "Smiling": 1, "group": None, "landmarks": None,
    }  # fmt: skip
    assert (rows["img/rot.jpg"]["width"], rows["img/rot.jpg"]["height"]) == (40, 80)
    assert result.counts["seen"] == 13 and result.counts["bad_label"] == 5


def test_labels_csv_minimal_columns(tmp_path: Path):
    put(tmp_path, "x.jpg", image_bytes(1))
    write_csv(tmp_path, ["path", "x.jpg"])
    assert scan(tmp_path, "labels_csv").rows[0]["labels"] == {"identity": None}


def test_every_celeba_attribute_is_a_column(tmp_path: Path):
    put(tmp_path, "x.jpg", image_bytes(1))
    write_csv(tmp_path, ["path," + ",".join(CELEBA_ATTRIBUTES), "x.jpg," + ",".join(["-1", "1"] * 20)])
    labels = scan(tmp_path, "labels_csv").rows[0]["labels"]
    assert [labels[name] for name in CELEBA_ATTRIBUTES] == [0, 1] * 20


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["path,identity,male", "x.jpg,a,1"], r"unknown column.*'male'.*did you mean 'Male'"),
        (["path,identity,colour", "x.jpg,a,1"], r"unknown column.*'colour'.*Allowed: path, identity"),
        (["identity", "a"], r"no 'path' column"),
        (["path,lx1,ly1", "x.jpg,1,2"], r"all ten"),
        (["path,age,age", "x.jpg,1,2"], r"repeated column"),
        (["path,identity", "x.jpg,a", "./x.jpg,b"], r"line 3 lists './x.jpg' again \(first on line 2\)"),
        (["path,identity", "x.jpg,a,extra"], r"line 2 has 3 fields"),
    ],
)
def test_labels_csv_errors_are_loud(tmp_path: Path, lines: list[str], message: str):
    put(tmp_path, "x.jpg", image_bytes(1))
    write_csv(tmp_path, lines)
    with pytest.raises(ValueError, match=message):
        scan_source(tmp_path, "src", "labels_csv", **LIMITS)


def test_labels_csv_needs_the_file(tmp_path: Path):
    put(tmp_path, "x.jpg", image_bytes(1))
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        scan_source(tmp_path, "src", "labels_csv", **LIMITS)


# --------------------------------------------------------------------------------- coco_keypoints


def person(ann_id: int, image_id: int, bbox: list[float], visible: int, joints: int = 17, crowd: int = 0) -> dict:
    keypoints = []
    for j in range(joints):
        keypoints += [float(bbox[0] + j), float(bbox[1] + j), 2 if j < visible else 0]
    return {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": crowd, "bbox": bbox,
        "area": bbox[2] * bbox[3], "num_keypoints": visible, "keypoints": keypoints,
    }  # fmt: skip


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    put(root, "images/one.jpg", image_bytes(1, (64, 48)))
    put(root, "images/empty.jpg", image_bytes(2, (64, 48)))
    put(root, "images/wrong_size.jpg", image_bytes(3, (64, 48)))
    put(root, "images/bad_kp.jpg", image_bytes(4, (64, 48)))
    put(root, "images/unlisted.jpg", image_bytes(5, (64, 48)))
    coco = {
        "images": [
            {"id": 1, "file_name": "images/one.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": "images/empty.jpg", "width": 64, "height": 48},
            {"id": 3, "file_name": "images/wrong_size.jpg", "width": 48, "height": 64},
            {"id": 4, "file_name": "images/bad_kp.jpg", "width": 64, "height": 48},
            {"id": 5, "file_name": "images/gone.jpg", "width": 64, "height": 48},
        ],
        "annotations": [
            person(10, 1, [1, 1, 10, 10], visible=5),
            person(11, 1, [5, 5, 30, 30], visible=0),  # largest, but no labelled keypoint
            person(12, 1, [2, 2, 20, 20], visible=17),
            person(13, 1, [0, 0, 64, 48], visible=0, crowd=1),  # crowd regions are not persons
            {**person(14, 4, [1, 1, 5, 5], visible=3), "keypoints": [1, 2]},
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": [f"j{i}" for i in range(17)]}],
    }
    put(root, "annotations.json", json.dumps(coco).encode())
    return root


def test_coco_keypoints(coco_root: Path):
    result = scan(coco_root, "coco_keypoints")
    assert reasons(result) == {
        "images/wrong_size.jpg": "bad_label",
        "images/bad_kp.jpg": "bad_label",
        "images/unlisted.jpg": "unlabeled",
        "images/gone.jpg": "missing_file",
    }
    rows = by_path(result)
    assert sorted(rows) == ["images/empty.jpg", "images/one.jpg"]
    one = rows["images/one.jpg"]["labels"]
    assert set(one) == {"identity", "keypoints", "persons"} and one["identity"] is None
    largest_first = [[5.0, 5.0, 30.0, 30.0], [2.0, 2.0, 20.0, 20.0], [1.0, 1.0, 10.0, 10.0]]
    assert [p["bbox"] for p in one["persons"]] == largest_first
    assert np.array(one["keypoints"]).shape == (17, 3)
    assert one["keypoints"] == one["persons"][1]["keypoints"]  # largest person with a labelled point
    assert rows["images/empty.jpg"]["labels"] == {"identity": None, "keypoints": None, "persons": []}


def test_coco_annotation_for_unknown_image_is_an_error(coco_root: Path):
    coco = json.loads((coco_root / "annotations.json").read_text())
    coco["annotations"].append(person(99, 42, [0, 0, 4, 4], visible=1))
    (coco_root / "annotations.json").write_text(json.dumps(coco))
    with pytest.raises(ValueError, match="image_id 42"):
        scan_source(coco_root, "src", "coco_keypoints", **LIMITS)


# ------------------------------------------------------------------------------------------ jsonl


def test_jsonl_round_trip_is_sorted_utf8_and_one_row_per_line(tmp_path: Path):
    rows = [{"b": 1, "a": "Zoë ünïcode"}, {"z": [1.5, None], "y": {"k": True}}]
    path = tmp_path / "out" / "rows.jsonl"
    write_jsonl(path, rows)
    text = path.read_text(encoding="utf-8")
    assert text == '{"a":"Zoë ünïcode","b":1}\n{"y":{"k":true},"z":[1.5,null]}\n'
    assert read_jsonl(path) == rows
    write_jsonl(path, [])
    assert path.read_bytes() == b"" and read_jsonl(path) == []


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"ok": 1}])
    with pytest.raises(ValueError):
        write_jsonl(path, [{"ok": 2}, {"bad": math.nan}])
    with pytest.raises(TypeError):
        write_jsonl(path, [{"bad": np.zeros(2)}])
    assert read_jsonl(path) == [{"ok": 1}]
    assert os.listdir(tmp_path) == ["rows.jsonl"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_atomic_write_replaces_content(tmp_path: Path):
    path = tmp_path / "a.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_text(path, "second\n")
    assert path.read_bytes() == b"second\n"
    assert os.listdir(tmp_path) == ["a.bin"]


@pytest.mark.parametrize(
    ("content", "message"),
    [('{"a":1}\n[1,2]\n', ":2: expected a JSON object"), ('{"a":1}\n\n', ":2: not valid JSON")],
)
def test_read_jsonl_names_the_bad_line(tmp_path: Path, content: str, message: str):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_jsonl(path)
