"""The inbox settling rules: a batch is reported once, only when complete, never with half-written files.

Everything runs on a fake clock: snapshots are built by hand (or from a tmp folder) and time is a number.
"""

from __future__ import annotations

import os
import threading

import pytest

from flows.inbox import FileSig, SettleTracker, looks_in_progress, settled_files, snapshot, watch_inbox

SETTLE = 10.0


def sig(size: int, mtime: int = 1) -> FileSig:
    return FileSig(size=size, mtime_ns=mtime)


@pytest.mark.parametrize(
    ("relpath", "in_progress"),
    [
        pytest.param("a.jpg", False, id="plain"),
        pytest.param("alice/001.jpg", False, id="nested"),
        pytest.param("a.jpg.part", True, id="part"),
        pytest.param("a.jpg.crdownload", True, id="chrome"),
        pytest.param("upload.TMP", True, id="tmp-upper"),
        pytest.param(".a.jpg.Xy12Zq", True, id="rsync-hidden"),
        pytest.param(".~lock.a.jpg#", True, id="lock"),
        pytest.param("~$report.jpg", True, id="office"),
        pytest.param("a.jpg~", True, id="backup"),
        pytest.param(".sync/a.jpg", True, id="hidden-folder"),
        pytest.param("tmp/a.jpg", False, id="folder-named-tmp"),
    ],
)
def test_looks_in_progress(relpath, in_progress):
    assert looks_in_progress(relpath) is in_progress


def test_half_written_file_is_never_reported_while_it_grows():
    tracker = SettleTracker(SETTLE)
    batches = []
    for step in range(20):  # grows by 1 kB every 5 s: never quiet for 10 s
        batches.append(tracker.observe("src", {"a.jpg": sig(1000 * (step + 1), step)}, now=5.0 * step))
    assert batches == [None] * 20
    final = {"a.jpg": sig(20_000, 19)}
    assert tracker.observe("src", final, now=100.0) is None  # unchanged since t=95
    assert tracker.observe("src", final, now=104.9) is None
    assert tracker.observe("src", final, now=105.0) == final


def test_a_growing_file_delays_the_whole_batch():
    tracker = SettleTracker(SETTLE)
    done = {"a.jpg": sig(10), "b.jpg": sig(20)}
    for t in range(0, 30, 2):
        assert tracker.observe("src", {**done, "c.jpg": sig(100 + t)}, now=float(t)) is None
    snap = {**done, "c.jpg": sig(128)}
    assert tracker.observe("src", snap, now=30.0) is None
    assert tracker.observe("src", snap, now=38.0) == snap  # last change seen at t=28


def test_temp_hidden_and_empty_files_are_never_in_a_batch():
    tracker = SettleTracker(SETTLE)
    snap = {"a.jpg": sig(10), "b.jpg.part": sig(5), ".c.jpg.tmp1": sig(5), "d.jpg": sig(0), "e~": sig(3)}
    tracker.observe("src", snap, now=0.0)
    assert tracker.observe("src", snap, now=SETTLE) == {"a.jpg": sig(10)}


def test_only_temp_files_give_no_batch():
    tracker = SettleTracker(SETTLE)
    snap = {"a.jpg.part": sig(10), "empty.jpg": sig(0)}
    tracker.observe("src", snap, now=0.0)
    assert tracker.observe("src", snap, now=100.0) is None


def test_rename_of_a_finished_download_is_a_new_change():
    tracker = SettleTracker(SETTLE)
    tracker.observe("src", {"a.jpg.part": sig(50)}, now=0.0)
    assert tracker.observe("src", {"a.jpg.part": sig(50)}, now=20.0) is None
    renamed = {"a.jpg": sig(50)}
    assert tracker.observe("src", renamed, now=21.0) is None  # the rename itself restarts the settle time
    assert tracker.observe("src", renamed, now=31.0) == renamed


def test_a_batch_is_reported_once_until_something_changes():
    tracker = SettleTracker(SETTLE)
    snap = {"a.jpg": sig(10)}
    tracker.observe("src", snap, now=0.0)
    batch = tracker.observe("src", snap, now=SETTLE)
    assert batch == snap
    tracker.mark_reported("src", batch)
    assert [tracker.observe("src", snap, now=SETTLE + k) for k in range(1, 5)] == [None] * 4
    grown = {**snap, "b.jpg": sig(7)}
    assert tracker.observe("src", grown, now=20.0) is None
    assert tracker.observe("src", grown, now=30.0) == grown
    tracker.mark_reported("src", grown)
    assert tracker.observe("src", grown, now=40.0) is None


def test_files_left_behind_do_not_retrigger_but_a_redrop_does():
    tracker = SettleTracker(SETTLE)
    snap = {"a.jpg": sig(10), "refused.jpg": sig(3)}
    tracker.observe("src", snap, now=0.0)
    tracker.mark_reported("src", tracker.observe("src", snap, now=SETTLE))
    left = {"refused.jpg": sig(3)}  # a.jpg was ingested and removed; refused.jpg stays
    tracker.observe("src", left, now=11.0)
    assert tracker.observe("src", left, now=30.0) is None
    tracker.observe("src", {}, now=31.0)  # refused.jpg removed by the user ...
    tracker.observe("src", left, now=32.0)  # ... and dropped again unchanged
    assert tracker.observe("src", left, now=42.0) == left


def test_sources_settle_independently():
    tracker = SettleTracker(SETTLE)
    tracker.observe("a", {"x.jpg": sig(1)}, now=0.0)
    tracker.observe("b", {"y.jpg": sig(1)}, now=5.0)
    assert tracker.observe("a", {"x.jpg": sig(1)}, now=10.0) == {"x.jpg": sig(1)}
    assert tracker.observe("b", {"y.jpg": sig(1)}, now=10.0) is None


def test_settled_files_judges_each_file_by_its_mtime():
    now = 1_000 * 10**9
    snap = {
        "old.jpg": FileSig(5, now - 11 * 10**9),
        "fresh.jpg": FileSig(5, now - 2 * 10**9),
        "future.jpg": FileSig(5, now + 10**9),
        "old.jpg.part": FileSig(5, 0),
        "empty.jpg": FileSig(0, 0),
    }
    assert settled_files(snap, SETTLE, now) == {"old.jpg": snap["old.jpg"]}
    assert set(settled_files(snap, 0.0, now)) == {"old.jpg", "fresh.jpg"}


def test_snapshot_lists_nested_files_and_does_not_follow_links(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "1.jpg").write_bytes(b"abc")
    (tmp_path / "2.jpg").write_bytes(b"")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "3.jpg").write_bytes(b"12345")
    (tmp_path / "linked").symlink_to(outside, target_is_directory=True)
    os.utime(tmp_path / "alice" / "1.jpg", ns=(123, 456))
    snap = snapshot(tmp_path)
    assert set(snap) == {"alice/1.jpg", "2.jpg", "linked"}
    assert snap["alice/1.jpg"] == FileSig(3, 456)
    assert snap["2.jpg"].size == 0
    assert snapshot(tmp_path / "missing") == {}


class _FakeClock:
    """Advances one second per reading, so the watch loop settles without sleeping."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def test_watch_inbox_reports_each_batch_once_and_retries_a_failed_handover(tmp_path, caplog):
    (tmp_path / "newsrc").mkdir()
    (tmp_path / "newsrc" / "a.jpg").write_bytes(b"x" * 10)
    (tmp_path / "newsrc" / "b.jpg.part").write_bytes(b"y")
    (tmp_path / "Bad Name").mkdir()
    (tmp_path / "stray.jpg").write_bytes(b"z")
    stop = threading.Event()
    calls: list[tuple[str, set[str]]] = []

    def on_settled(source, batch):
        calls.append((source, set(batch)))
        if len(calls) == 1:
            raise RuntimeError("server not reachable")  # first hand-over fails: offered again
        if len(calls) == 2:
            (tmp_path / "newsrc" / "c.jpg").write_bytes(b"c" * 4)
        if len(calls) == 3:
            stop.set()

    watcher = threading.Thread(target=watch_inbox, args=(tmp_path, 3.0, 0.0, on_settled, stop, _FakeClock()))
    watcher.start()
    watcher.join(timeout=30)
    stop.set()
    assert not watcher.is_alive()
    assert calls == [("newsrc", {"a.jpg"}), ("newsrc", {"a.jpg"}), ("newsrc", {"a.jpg", "c.jpg"})]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("Bad Name" in w for w in warnings) == 1
    assert sum("stray.jpg" in w for w in warnings) == 1


def test_tracker_rejects_a_negative_settle_time():
    with pytest.raises(ValueError, match="settle_seconds"):
        SettleTracker(-1.0)

