"""Workspace plumbing: DAG order from DVC, the one-run lock, atomic outputs, recovery after a killed run."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import yaml

from faceops.io.atomic import atomic_directory, atomic_file, atomic_write_text, remove_stale_temporaries
from faceops.processes import process_identity
from flows import workspace as workspace_module
from flows.workspace import (
    LOCK_FILE,
    WorkspaceError,
    _write_journal,
    classify_failure,
    find_root,
    interrupted_stage,
    recover,
    stage_order,
    workspace_lock,
)


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


def test_second_run_queues_when_allowed_to_wait(tmp_path, monkeypatch):
    """A second run that may wait is refused at least once while the first holds the lock, then gets it.

    No timing: the first run releases only after the second has been refused (seen through a wrapped
    ``flock``), and the order of events says the second got the lock after the first let go.
    """
    real_flock = workspace_module.fcntl.flock
    refused = threading.Event()
    events: list[str] = []

    def flock(handle, operation):
        try:
            return real_flock(handle, operation)
        except BlockingIOError:
            if getattr(handle, "name", "").endswith(LOCK_FILE):
                refused.set()
            raise

    monkeypatch.setattr(workspace_module.fcntl, "flock", flock)
    acquired = threading.Event()
    failure: list[BaseException] = []

    def first_run():
        try:
            with workspace_lock(tmp_path):
                acquired.set()
                assert refused.wait(60), "the second run never tried the lock"
                events.append("first run releases")
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            failure.append(err)
            acquired.set()

    thread = threading.Thread(target=first_run)
    thread.start()
    assert acquired.wait(60) and not failure, failure
    with workspace_lock(tmp_path, wait_seconds=120):
        events.append("second run holds the lock")
    thread.join(60)
    assert not thread.is_alive() and not failure, failure
    assert refused.is_set()
    assert events == ["first run releases", "second run holds the lock"]


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


def _dead_identity() -> str:
    proc = subprocess.Popen(["true"])
    identity = process_identity(proc.pid)
    proc.wait()
    return identity


def test_atomic_directory_cleans_staging_left_by_a_dead_writer(tmp_path):
    legacy = tmp_path / ".tmp-out-deadbeef"  # written before names carried their writer
    dead = tmp_path / f".tmp-out-{_dead_identity()}-0123abcd"
    for stale in (legacy, dead):
        stale.mkdir()
        (stale / "junk").write_text("x")
    with atomic_directory(tmp_path / "out") as staging:
        (staging / "ok").write_text("y")
    assert not legacy.exists() and not dead.exists()


def test_a_live_writers_staging_folder_and_temporary_file_are_never_removed(tmp_path):
    """The race of the crash-safety issue: a new run must not delete what a live writer is filling."""
    writer = subprocess.Popen(["sleep", "60"])
    try:
        live = tmp_path / f".tmp-out-{process_identity(writer.pid)}-0123abcd"
        live.mkdir()
        (live / "face.jpg").write_bytes(b"...")
        live_file = tmp_path / f".out.{process_identity(writer.pid)}.x1y2z3.tmp"
        live_file.write_bytes(b"half")
        dead_file = tmp_path / f".out.{_dead_identity()}.a1b2c3.tmp"
        dead_file.write_bytes(b"half")
        assert remove_stale_temporaries(tmp_path / "out") == [dead_file]
        assert (live / "face.jpg").is_file() and live_file.is_file()
        with atomic_directory(tmp_path / "out") as staging:
            (staging / "ok").write_text("y")
        assert live.is_dir()
    finally:
        writer.kill()
        writer.wait()
    assert sorted(p.name for p in remove_stale_temporaries(tmp_path / "out")) == sorted([live.name, live_file.name])


def test_atomic_file_leaves_the_old_content_on_error(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as handle:
            handle.write(b"ne")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def _dvc_workspace(root):
    (root / "dvc.yaml").write_text("stages:\n  s:\n    cmd: echo\n    outs:\n      - data/out\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)


def test_recover_removes_leftovers_beside_dvc_outputs(tmp_path):
    _dvc_workspace(tmp_path)
    leftover = tmp_path / "data" / ".tmp-out-1234abcd"
    leftover.mkdir(parents=True)
    unrelated = tmp_path / "data" / ".tmp-other-1234abcd"
    unrelated.mkdir()
    assert recover(tmp_path) == ["removed data/.tmp-out-1234abcd left by an interrupted stage"]
    assert not leftover.exists() and unrelated.exists()


def test_recover_puts_dvc_lock_back_as_the_journal_recorded_it(tmp_path):
    _dvc_workspace(tmp_path)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  s:\n    cmd: echo\n")
    _write_journal(tmp_path, "s")
    assert interrupted_stage(tmp_path) == "s"
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  s:\n    cmd: ec")  # cut short by a kill
    notes = recover(tmp_path)
    assert notes == ["stage s was interrupted by a killed run: dvc.lock put back as before it, so it runs again"]
    assert (tmp_path / "dvc.lock").read_text().endswith("cmd: echo\n")
    assert interrupted_stage(tmp_path) is None and recover(tmp_path) == []


def test_recover_removes_a_lock_file_that_did_not_exist_before_the_interrupted_stage(tmp_path):
    _dvc_workspace(tmp_path)
    _write_journal(tmp_path, "s")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    recover(tmp_path)
    assert not (tmp_path / "dvc.lock").exists()


def test_recover_replaces_an_unreadable_dvc_rwlock(tmp_path):
    _dvc_workspace(tmp_path)
    rwlock = tmp_path / ".dvc" / "tmp" / "rwlock"
    rwlock.parent.mkdir(parents=True, exist_ok=True)
    rwlock.write_text('{"write": {"da')
    assert recover(tmp_path) == ["removed .dvc/tmp/rwlock, left unreadable by a killed DVC process"]
    assert not rwlock.exists()


@pytest.mark.parametrize(
    ("exitcode", "tail", "transient"),
    [
        (-9, [], True),
        (255, ["ERROR: failed to reproduce 'align': failed to run: python -m stages.align, exited with -9"], True),
        (255, ["ERROR: failed to reproduce 'align': failed to run: python -m stages.align, exited with 137"], True),
        (255, ["ERROR: '/ws/metrics/align.json' is busy, it is being blocked by:"], True),
        (255, ["Traceback (most recent call last):", '  File "x.py", line 1', "OSError: [Errno 5] Input/output error",
               "ERROR: failed to reproduce 'a': failed to run: python -m stages.a, exited with 1"], True),
        (255, ["concurrent.futures.process.BrokenProcessPool: A process in the process pool was terminated",
               "ERROR: failed to reproduce"], True),
        (255, ["Traceback (most recent call last):", "ValueError: k must be positive",
               "ERROR: failed to reproduce 'cluster': failed to run: python -m stages.cluster, exited with 1"], False),
        (255, ["TypeError: unsupported operand", "ERROR: failed to reproduce"], False),
        (255, ["something went wrong"], False),
    ],
)
def test_only_transient_stage_failures_are_retried(exitcode, tail, transient):
    assert classify_failure(exitcode, tail)[0] is transient
