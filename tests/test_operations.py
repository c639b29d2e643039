"""Inbox batches become DVC-tracked source versions without losing or duplicating a file.

Each test builds a small git + DVC workspace (dvc.yaml and params.yaml copied from the repo) and calls
flows.sources.add_files_to_source the way the new-data flow does, with the signatures of the settled files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import flows.sources as sources
from faceops.config.params import load_params
from faceops.config.pipeline import PipelineParams
from flows.inbox import snapshot
from flows.operations import queue_wait_seconds
from flows.sources import SourceError, add_files_to_source, register_source
from flows.workspace import stage_order

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def workspace(tmp_path):
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, tmp_path / name)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, timeout=60)
    for args in (["init", "-q"], ["config", "core.analytics", "false"]):
        subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, check=True, timeout=120)
    return tmp_path


def _drop(folder: Path, files: dict[str, bytes]) -> None:
    for relpath, data in files.items():
        (folder / relpath).parent.mkdir(parents=True, exist_ok=True)
        (folder / relpath).write_bytes(data)


def _dvc_entry(workspace: Path, source: str) -> dict:
    return yaml.safe_load((workspace / "data" / "raw" / f"{source}.dvc").read_text())["outs"][0]


def _sources(workspace: Path) -> list[dict]:
    return yaml.safe_load((workspace / "params.yaml").read_text())["ingest"]["sources"]


def test_new_source_is_registered_unlabeled_and_tracked(workspace):
    inbox = workspace / "data" / "inbox" / "newcam"
    _drop(inbox, {"a.jpg": b"photo-a", "day2/b.jpg": b"photo-b", "c.jpg": b"photo-a", "d.jpg.part": b"half"})
    result = add_files_to_source(workspace, "newcam", inbox, snapshot(inbox))
    assert result.created
    assert result.added == ["a.jpg", "day2/b.jpg"]
    assert result.duplicates == ["c.jpg"]  # same bytes as a.jpg, earlier in the batch
    assert set(result.refused) == {"d.jpg.part"}
    raw = workspace / "data" / "raw" / "newcam"
    assert (raw / "a.jpg").read_bytes() == b"photo-a"
    assert (raw / "day2" / "b.jpg").read_bytes() == b"photo-b"
    assert sorted(p.name for p in raw.rglob("*") if p.is_file()) == ["a.jpg", "b.jpg"]
    assert {"name": "newcam", "format": "unlabeled"} in _sources(workspace)
    assert any(s.name == "newcam" for s in load_params(workspace / "params.yaml").ingest.sources)
    entry = _dvc_entry(workspace, "newcam")
    assert entry["path"] == "newcam" and entry["nfiles"] == 2 and entry["md5"].endswith(".dir")
    assert sorted(p.relative_to(inbox).as_posix() for p in inbox.rglob("*")) == ["d.jpg.part"]


def test_existing_source_keeps_its_format_and_skips_known_content(workspace):
    register_source(workspace, "lab", "imagefolder", lambda d: _drop(d, {"alice/0.jpg": b"alice-0"}), replace=False)
    before = _dvc_entry(workspace, "lab")
    inbox = workspace / "data" / "inbox" / "lab"
    _drop(inbox, {"alice/0_again.jpg": b"alice-0", "bob/1.jpg": b"bob-1", "alice/0.jpg": b"another alice-0"})
    result = add_files_to_source(workspace, "lab", inbox, snapshot(inbox))
    assert not result.created
    assert result.added == ["bob/1.jpg"]
    assert result.duplicates == ["alice/0_again.jpg"]
    assert "already exists" in result.refused["alice/0.jpg"]
    raw = workspace / "data" / "raw" / "lab"
    assert (raw / "alice" / "0.jpg").read_bytes() == b"alice-0"  # never overwritten
    assert (raw / "bob" / "1.jpg").read_bytes() == b"bob-1"
    assert not (raw / "alice" / "0_again.jpg").exists()
    assert [s for s in _sources(workspace) if s["name"] == "lab"] == [{"name": "lab", "format": "imagefolder"}]
    after = _dvc_entry(workspace, "lab")
    assert after["md5"] != before["md5"] and after["nfiles"] == 2
    assert sorted(p.relative_to(inbox).as_posix() for p in inbox.rglob("*") if p.is_file()) == ["alice/0.jpg"]


def test_a_dropped_labels_csv_replaces_the_layouts_file(workspace):
    register_source(workspace, "tagged", "labels_csv",
                    lambda d: _drop(d, {"labels.csv": b"path,identity\na.jpg,x\n", "a.jpg": b"a"}), replace=False)  # fmt: skip
    inbox = workspace / "data" / "inbox" / "tagged"
    new_csv = b"path,identity\na.jpg,x\nb.jpg,y\n"
    _drop(inbox, {"labels.csv": new_csv, "b.jpg": b"b"})
    result = add_files_to_source(workspace, "tagged", inbox, snapshot(inbox))
    assert result.added == ["b.jpg", "labels.csv"]
    assert (workspace / "data" / "raw" / "tagged" / "labels.csv").read_bytes() == new_csv


def test_sample_is_a_pipeline_output_and_refused(workspace):
    inbox = workspace / "data" / "inbox" / "sample"
    _drop(inbox, {"a.jpg": b"a"})
    with pytest.raises(SourceError, match="written by a pipeline stage"):
        add_files_to_source(workspace, "sample", inbox, snapshot(inbox))
    assert (inbox / "a.jpg").read_bytes() == b"a"
    assert not (workspace / "data" / "raw" / "sample").exists()


def test_files_that_changed_since_settling_stay_in_the_inbox(workspace):
    inbox = workspace / "data" / "inbox" / "cam"
    _drop(inbox, {"a.jpg": b"a", "b.jpg": b"b"})
    seen = snapshot(inbox)
    (inbox / "b.jpg").write_bytes(b"b, still being written")
    result = add_files_to_source(workspace, "cam", inbox, seen)
    assert result.added == ["a.jpg"]
    assert "changed" in result.refused["b.jpg"]
    assert (inbox / "b.jpg").read_bytes() == b"b, still being written"
    assert not (workspace / "data" / "raw" / "cam" / "b.jpg").exists()


def test_inbox_is_emptied_only_after_dvc_add_succeeds(workspace, monkeypatch):
    register_source(workspace, "lab", "imagefolder", lambda d: _drop(d, {"alice/0.jpg": b"alice-0"}), replace=False)
    inbox = workspace / "data" / "inbox" / "lab"
    _drop(inbox, {"bob/1.jpg": b"bob-1", "carol/2.jpg": b"carol-2"})
    seen = snapshot(inbox)

    def broken_dvc_add(ws, target):
        raise RuntimeError("dvc add failed: disk full")

    monkeypatch.setattr(sources, "dvc_add", broken_dvc_add)
    with pytest.raises(RuntimeError, match="disk full"):
        add_files_to_source(workspace, "lab", inbox, seen)
    assert snapshot(inbox) == seen  # nothing left the inbox
    monkeypatch.undo()
    retry = add_files_to_source(workspace, "lab", inbox, seen)  # the copies made before the failure are known now
    assert retry.added == [] and retry.duplicates == ["bob/1.jpg", "carol/2.jpg"]
    assert _dvc_entry(workspace, "lab")["nfiles"] == 3
    assert snapshot(inbox) == {}
    assert not list((workspace / ".faceops" / "staging").iterdir())


def test_invalid_source_name_is_refused(workspace):
    inbox = workspace / "data" / "inbox" / "Cam-1"
    _drop(inbox, {"a.jpg": b"a"})
    with pytest.raises(SourceError, match="must match"):
        add_files_to_source(workspace, "Cam-1", inbox, snapshot(inbox))
    assert (inbox / "a.jpg").exists()


def test_a_served_run_waits_for_the_lock_as_long_as_a_whole_pipeline_may_take(workspace, monkeypatch):
    monkeypatch.chdir(workspace)  # as served: faceops serve runs in the workspace (stage names are cwd-relative)
    n_stages = len(stage_order(workspace))
    settings = PipelineParams(timeout_seconds=100, retries=1, stage_timeout_seconds={"train": 1000},
                              stage_retries={"train": 0})  # fmt: skip
    assert queue_wait_seconds(workspace, settings) == 100 * 2 * (n_stages - 1) + 1000
    longer = settings.model_copy(update={"lock_wait_seconds": 1e6})
    assert queue_wait_seconds(workspace, longer) == 1e6
