"""Workspace plumbing: DAG order from DVC, the one-run lock, atomic directory outputs."""

from __future__ import annotations

import threading
import time

import pytest
import yaml

from faceops.io.atomic import atomic_directory
from flows.workspace import WorkspaceError, find_root, stage_order, workspace_lock


def test_stage_order_comes_from_dvc_and_respects_deps(repo_root):
    declared = list(yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"])
    order = stage_order(repo_root)
    assert sorted(order) == sorted(declared)
    outs = {}
    spec = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]
    for name, stage in spec.items():
        for out in stage.get("outs", []) + [next(iter(m)) for m in stage.get("metrics", [])]:
            outs[out if isinstance(out, str) else next(iter(out))] = name
    for name, stage in spec.items():
        for dep in stage.get("deps", []):
            producers = {p for o, p in outs.items() if o == dep or o.startswith(dep + "/") or dep.startswith(o + "/")}
            for producer in producers - {name}:
                assert order.index(producer) < order.index(name), (producer, name, order)


def test_stage_order_with_target_keeps_only_upstream(repo_root):
    assert stage_order(repo_root, ["align"]) == ["sample", "ingest", "keypoints", "align"]


def test_stage_names_do_not_depend_on_the_current_directory(repo_root, tmp_path, monkeypatch):
    here = stage_order(repo_root)
    monkeypatch.chdir(tmp_path)
    assert stage_order(repo_root) == here
    assert stage_order(repo_root, ["align"]) == ["sample", "ingest", "keypoints", "align"]
    with pytest.raises(WorkspaceError, match="unknown stage"):
        stage_order(repo_root, ["nope"])


def test_find_root_walks_up(repo_root):
    assert find_root(repo_root / "src" / "faceops") == repo_root


def test_find_root_outside_a_workspace(tmp_path):
    with pytest.raises(WorkspaceError, match="no dvc.yaml"):
        find_root(tmp_path)


def test_second_run_is_refused_with_a_clear_message(tmp_path):
    with workspace_lock(tmp_path):
        with pytest.raises(WorkspaceError, match="another faceops run holds"):
            with workspace_lock(tmp_path, wait_seconds=0):
                pass


def test_second_run_queues_when_allowed_to_wait(tmp_path):
    acquired = threading.Event()
    release = threading.Event()

    def holder():
        with workspace_lock(tmp_path):
            acquired.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    acquired.wait(5)
    threading.Timer(0.3, release.set).start()
    start = time.monotonic()
    with workspace_lock(tmp_path, wait_seconds=10):
        waited = time.monotonic() - start
    thread.join()
    assert waited >= 0.2


def test_atomic_directory_replaces_only_on_success(tmp_path):
    out = tmp_path / "out"
    with atomic_directory(out) as staging:
        (staging / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_directory(out) as staging:
            (staging / "a.txt").write_text("half")
            raise RuntimeError("killed")
    assert (out / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_directory(out) as staging:
        (staging / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_atomic_directory_cleans_staging_left_by_a_killed_run(tmp_path):
    stale = tmp_path / ".tmp-out-deadbeef"
    stale.mkdir()
    (stale / "junk").write_text("x")
    with atomic_directory(tmp_path / "out") as staging:
        (staging / "ok").write_text("y")
    assert not stale.exists()


def test_sweep_staging_removes_leftovers_beside_dvc_outputs(tmp_path):
    import subprocess
    import sys

    from flows.workspace import sweep_staging

    (tmp_path / "dvc.yaml").write_text("stages:\n  s:\n    cmd: echo\n    outs:\n      - data/out\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    leftover = tmp_path / "data" / ".tmp-out-1234abcd"
    leftover.mkdir(parents=True)
    unrelated = tmp_path / "data" / ".tmp-other-1234abcd"
    unrelated.mkdir()
    assert sweep_staging(tmp_path) == [leftover]
    assert not leftover.exists() and unrelated.exists()
