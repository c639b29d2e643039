"""An output whose own listing names missing files is incomplete (faceops.io.integrity)."""

from __future__ import annotations

import json
from pathlib import Path

from faceops.io.integrity import check_output
from faceops.io.jsonl import write_jsonl


def _aligned(root: Path, n: int) -> Path:
    out = root / "aligned"
    (out / "faces").mkdir(parents=True)
    rows = []
    for i in range(n):
        (out / "faces" / f"s_{i}.jpg").write_bytes(b"jpg")
        rows.append({"id": f"s_{i}", "face": f"faces/s_{i}.jpg"})
    write_jsonl(out / "manifest.jsonl", rows)
    write_jsonl(out / "quarantine.jsonl", [])
    return out


def test_a_whole_output_passes(tmp_path):
    assert check_output(_aligned(tmp_path, 5)) == []


def test_faces_listed_in_the_manifest_but_missing_make_it_incomplete(tmp_path):
    out = _aligned(tmp_path, 5)
    for i in (1, 3):
        (out / "faces" / f"s_{i}.jpg").unlink()
    (problem,) = check_output(out)
    assert problem.listing == out / "manifest.jsonl"
    assert problem.listed == 5 and problem.missing == ["faces/s_1.jpg", "faces/s_3.jpg"]
    assert problem.describe() == "lists 5 files, 2 missing (faces/s_1.jpg, faces/s_3.jpg)"


def test_a_shard_index_one_level_down_naming_a_missing_shard(tmp_path):
    source = tmp_path / "shards" / "sample"
    source.mkdir(parents=True)
    (source / "train-000000.tar").write_bytes(b"tar")
    index = {"format": 1, "samples": 3, "splits": {"train": {"shards": ["train-000000.tar", "train-000001.tar"],
                                                             "samples": 3, "identities": 1}}}  # fmt: skip
    (source / "index.json").write_text(json.dumps(index))
    (problem,) = check_output(tmp_path / "shards")
    assert problem.missing == ["train-000001.tar"]


def test_files_and_missing_outputs_are_left_to_dvc(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    assert check_output(tmp_path / "model.pt") == []
    assert check_output(tmp_path / "nothing") == []
