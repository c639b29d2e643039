"""faceops.runcache and its stage side (stages._finished): a finished run is restored when its inputs are unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faceops import runcache
from faceops.io.shards import write_index
from stages._finished import cache_folder, reuse_or_run


def _stage(tmp_path: Path, calls: list[str]):
    """A stand-in stage: writes an output folder and a metrics file, counting its runs."""
    out, metrics = tmp_path / "out", tmp_path / "metrics.json"

    def run() -> None:
        calls.append("run")
        out.mkdir(exist_ok=True)
        (out / "result.txt").write_text(f"run {len(calls)}\n")
        metrics.write_text(f'{{"runs": {len(calls)}}}\n')

    return run, {"out": out, "metrics.json": metrics}


def _contents(outputs: dict[str, Path]) -> dict[str, bytes]:
    return {name: (p / "result.txt" if p.is_dir() else p).read_bytes() for name, p in outputs.items()}


def test_library_keeps_the_run_and_restores_it_byte_for_byte(tmp_path):
    calls: list[str] = []
    run, outputs = _stage(tmp_path, calls)
    entry = tmp_path / "cache" / runcache.fingerprint("cluster", [{"lr": 0.1}], code="code-v1", device="cpu")
    assert runcache.reuse_or_run(entry, outputs, run) is False and runcache.is_finished(entry, outputs)
    first = _contents(outputs)
    (outputs["out"] / "result.txt").unlink()
    outputs["metrics.json"].write_text("stale\n")
    assert runcache.reuse_or_run(entry, outputs, run) is True
    assert calls == ["run"] and _contents(outputs) == first


def test_fingerprint_covers_parts_code_and_device():
    key = runcache.fingerprint("embed", [{"lr": 0.1}, "data"], code="c1", device="cpu")
    assert key == runcache.fingerprint("embed", [{"lr": 0.1}, "data"], code="c1", device="cpu")
    others = [runcache.fingerprint("embed", [{"lr": 0.2}, "data"], code="c1", device="cpu"),
              runcache.fingerprint("embed", [{"lr": 0.1}, "data"], code="c2", device="cpu"),
              runcache.fingerprint("embed", [{"lr": 0.1}, "data"], code="c1", device="cuda"),
              runcache.fingerprint("cluster", [{"lr": 0.1}, "data"], code="c1", device="cpu")]  # fmt: skip
    assert key not in others and len(set(others)) == len(others)


def test_stage_side_reads_its_code_from_dvc_yaml_and_reruns_on_other_parts(tmp_path):
    calls: list[str] = []
    run, outputs = _stage(tmp_path, calls)
    cache = tmp_path / "cache"
    assert reuse_or_run("cluster", cache, [{"lr": 0.1}, "data-v1"], outputs, run) is False
    first = _contents(outputs)
    (outputs["out"] / "result.txt").unlink()
    outputs["metrics.json"].write_text("stale\n")
    assert reuse_or_run("cluster", cache, [{"lr": 0.1}, "data-v1"], outputs, run) is True
    assert calls == ["run"] and _contents(outputs) == first
    assert reuse_or_run("cluster", cache, [{"lr": 0.1}, "data-v2"], outputs, run) is False  # other data: runs
    assert reuse_or_run("cluster", cache, [{"lr": 0.2}, "data-v1"], outputs, run) is False  # other params: runs
    assert calls == ["run"] * 3


def test_without_a_cache_every_call_runs(tmp_path):
    calls: list[str] = []
    run, outputs = _stage(tmp_path, calls)
    for _ in range(2):
        assert reuse_or_run("cluster", None, ["same"], outputs, run) is False
    assert calls == ["run", "run"]


def test_prune_keeps_the_most_recently_used_runs(tmp_path):
    for n in range(6):
        (tmp_path / f"run{n}").mkdir()
        os.utime(tmp_path / f"run{n}", ns=(n * 10**9, n * 10**9))
    os.utime(tmp_path / "run0")  # just used
    removed = runcache.prune_finished(tmp_path, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run0", "run4", "run5"]
    assert sorted(p.name for p in removed) == ["run1", "run2", "run3"]


def test_cache_takes_one_folder():
    assert cache_folder([]) is None
    assert cache_folder([Path("a")]) == Path("a")
    with pytest.raises(SystemExit, match="one folder"):
        cache_folder([Path("a"), Path("b")])


def test_split_digests_follow_shard_bytes_and_mark_missing_splits(tmp_path):
    folder = tmp_path / "shards" / "faces"
    folder.mkdir(parents=True)
    (folder / "train-000000.tar").write_bytes(b"first bytes")
    (folder / "test-000000.tar").write_bytes(b"test bytes")
    write_index(folder, {"format": 1, "samples": 3, "splits": {
        "train": {"shards": ["train-000000.tar"], "samples": 2, "identities": 1},
        "test": {"shards": ["test-000000.tar"], "samples": 1, "identities": 1}}})  # fmt: skip
    before = runcache.split_digests(tmp_path / "shards", "faces", ["train", "val"])
    assert before["val"] is None and [name for name, _ in before["train"]] == ["train-000000.tar"]
    (folder / "test-000000.tar").write_bytes(b"other test bytes")  # a split it does not read
    assert runcache.split_digests(tmp_path / "shards", "faces", ["train", "val"]) == before
    (folder / "train-000000.tar").write_bytes(b"relabelled bytes")  # same name, same index, new content
    assert runcache.split_digests(tmp_path / "shards", "faces", ["train", "val"]) != before
