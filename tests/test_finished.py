"""stages._finished: a stage's finished run is restored when what decides it is unchanged."""

from __future__ import annotations

from pathlib import Path

from faceops.io.shards import write_index
from stages._finished import reuse_or_run, split_digests


def _stage(tmp_path: Path, calls: list[str]):
    """A stand-in stage: writes an output folder and a metrics file, counting its runs."""
    out, metrics = tmp_path / "out", tmp_path / "metrics.json"

    def run() -> None:
        calls.append("run")
        out.mkdir(exist_ok=True)
        (out / "result.txt").write_text(f"run {len(calls)}\n")
        metrics.write_text('{"runs": %d}\n' % len(calls))

    return run, {"out": out, "metrics.json": metrics}


def test_same_parts_restore_the_first_run_byte_for_byte(tmp_path):
    calls: list[str] = []
    run, outputs = _stage(tmp_path, calls)
    cache = tmp_path / "cache"
    assert reuse_or_run("cluster", cache, [{"lr": 0.1}, "data-v1"], outputs, run) is False
    first = {name: (p / "result.txt" if p.is_dir() else p).read_bytes() for name, p in outputs.items()}
    (outputs["out"] / "result.txt").unlink()
    outputs["metrics.json"].write_text("stale\n")
    assert reuse_or_run("cluster", cache, [{"lr": 0.1}, "data-v1"], outputs, run) is True
    assert calls == ["run"]
    assert {name: (p / "result.txt" if p.is_dir() else p).read_bytes() for name, p in outputs.items()} == first
    assert reuse_or_run("cluster", cache, [{"lr": 0.1}, "data-v2"], outputs, run) is False  # other data: runs
    assert reuse_or_run("cluster", cache, [{"lr": 0.2}, "data-v1"], outputs, run) is False  # other params: runs
    assert calls == ["run"] * 3


def test_without_a_cache_every_call_runs(tmp_path):
    calls: list[str] = []
    run, outputs = _stage(tmp_path, calls)
    for _ in range(2):
        assert reuse_or_run("cluster", None, ["same"], outputs, run) is False
    assert calls == ["run", "run"]


def test_split_digests_follow_shard_bytes_and_mark_missing_splits(tmp_path):
    folder = tmp_path / "shards" / "faces"
    folder.mkdir(parents=True)
    (folder / "train-000000.tar").write_bytes(b"first bytes")
    (folder / "test-000000.tar").write_bytes(b"test bytes")
    write_index(folder, {"format": 1, "samples": 3, "splits": {
        "train": {"shards": ["train-000000.tar"], "samples": 2, "identities": 1},
        "test": {"shards": ["test-000000.tar"], "samples": 1, "identities": 1}}})  # fmt: skip
    before = split_digests(tmp_path / "shards", "faces", ["train", "val"])
    assert before["val"] is None and [name for name, _ in before["train"]] == ["train-000000.tar"]
    (folder / "test-000000.tar").write_bytes(b"other test bytes")  # a split it does not read
    assert split_digests(tmp_path / "shards", "faces", ["train", "val"]) == before
    (folder / "train-000000.tar").write_bytes(b"relabelled bytes")  # same name, same index, new content
    assert split_digests(tmp_path / "shards", "faces", ["train", "val"]) != before
