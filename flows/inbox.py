"""The watched inbox: decide when a dropped batch of files is complete, so that no half-written file is ingested.

Layout: ``<inbox>/<source>/<any relative path>``; every folder directly under the inbox names the source its
files become a new version of. Nothing here knows about DVC or Prefect: :func:`watch_inbox` calls back with a
settled batch and the caller decides what to do (``faceops serve`` emits an event).

A folder **settles** when nothing in it (no name, size or mtime) changed for ``settle_seconds``. A file
that is still being written keeps changing, so its folder does not settle; files that look in progress
(temporary names such as ``*.part``, ``*.tmp``, ``.~lock``, any hidden name, and empty files) are never
part of a batch even after settling: a download or an ``rsync`` writes under a temporary name and renames
the finished file, which is then a change like any other. An abandoned temporary file stops holding the
folder back once it is quiet itself, so a crashed copy cannot block the inbox forever.

Two clocks, on purpose: the watcher measures quietness with a monotonic clock on what it observed;
:func:`settled_files` (used by the flow that ingests, possibly much later or in another process) judges
each file by its own mtime against the wall clock. Both are pure given their clock, so tests never sleep.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from faceops.config import SOURCE_NAME_PATTERN

__all__ = ["FileSig", "Snapshot", "SettleTracker", "looks_in_progress", "settled_files", "snapshot", "watch_inbox"]

log = logging.getLogger("faceops.inbox")

#: Name endings that downloaders, copy tools and editors use while a file is incomplete.
TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".filepart", "~")
#: Name beginnings of office lock files and similar; hidden names (a leading dot) are covered separately.
TEMP_PREFIXES = ("~$", ".~")


@dataclass(frozen=True)
class FileSig:
    """What is compared to tell whether a file changed: its size and modification time."""

    size: int
    mtime_ns: int


#: POSIX path relative to a source folder -> signature.
Snapshot = dict[str, FileSig]


def looks_in_progress(relpath: str) -> bool:
    """True for temporary or hidden names (in any path component), which are never ingested."""
    parts = relpath.split("/")
    if any(part.startswith(".") for part in parts):
        return True
    name = parts[-1].lower()
    return name.startswith(TEMP_PREFIXES) or name.endswith(TEMP_SUFFIXES)


def _ready(snap: Mapping[str, FileSig]) -> Snapshot:
    """The files a batch may hold: not in progress by name, and not empty (an empty file may be about to fill)."""
    return {path: sig for path, sig in snap.items() if sig.size > 0 and not looks_in_progress(path)}


def snapshot(folder: Path) -> Snapshot:
    """Size and mtime of every regular file under ``folder`` (symlinks are listed as links, not followed).

    Files that vanish while the folder is listed are left out; a missing folder gives an empty snapshot.
    """
    snap: Snapshot = {}

    def visit(directory: Path, prefix: str) -> None:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            relpath = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    visit(Path(entry.path), relpath + "/")
                    continue
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            snap[relpath] = FileSig(size=stat.st_size, mtime_ns=stat.st_mtime_ns)

    visit(folder, "")
    return snap


def settled_files(snap: Mapping[str, FileSig], settle_seconds: float, now_ns: int) -> Snapshot:
    """The files of ``snap`` that are complete by their own mtime: ready and unmodified for ``settle_seconds``.

    A file with an mtime in the future (clock skew, a copy still being timestamped) waits.
    """
    quiet_ns = int(settle_seconds * 1e9)
    return {path: sig for path, sig in _ready(snap).items() if now_ns - sig.mtime_ns >= quiet_ns}


@dataclass
class _FolderState:
    snap: Snapshot
    changed_at: float
    reported: Snapshot = field(default_factory=dict)


class SettleTracker:
    """Turns successive snapshots of source folders into settled batches, each reported once.

    Feed it :meth:`observe` with a snapshot and the time; it answers with the batch when the folder has
    been unchanged for ``settle_seconds`` and holds a file (or a file version) not reported before. The
    caller confirms with :meth:`mark_reported` once the batch was handed on, so a failed hand-over is
    retried on the next observation. A folder seen for the first time counts as just changed.
    """

    def __init__(self, settle_seconds: float) -> None:
        if settle_seconds < 0:
            raise ValueError(f"settle_seconds must be >= 0, got {settle_seconds}")
        self.settle_seconds = settle_seconds
        self._folders: dict[str, _FolderState] = {}

    def observe(self, source: str, snap: Snapshot, now: float) -> Snapshot | None:
        """Record one snapshot of ``source`` taken at ``now``; return its settled batch or None."""
        state = self._folders.get(source)
        if state is None:
            state = self._folders[source] = _FolderState(snap=dict(snap), changed_at=now)
        elif state.snap != snap:
            state.snap, state.changed_at = dict(snap), now
            # A file removed (ingested) and dropped again with the same signature is new again.
            state.reported = {path: sig for path, sig in state.reported.items() if snap.get(path) == sig}
        if now - state.changed_at < self.settle_seconds:
            return None
        batch = _ready(state.snap)
        if all(state.reported.get(path) == sig for path, sig in batch.items()):
            return None
        return batch

    def mark_reported(self, source: str, batch: Snapshot) -> None:
        """Remember ``batch`` as handed on: it is not reported again until something in it changes."""
        self._folders[source].reported.update(batch)

    def forget(self, source: str) -> None:
        """Drop the state of a folder that disappeared."""
        self._folders.pop(source, None)


def watch_inbox(
    inbox: Path,
    settle_seconds: float,
    poll_seconds: float,
    on_settled: Callable[[str, Snapshot], None],
    stop_event: threading.Event,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll ``inbox`` until ``stop_event`` is set; call ``on_settled(source, batch)`` once per settled batch.

    Polling (not inotify) because it works the same on network filesystems and in containers, and the
    settle time is seconds anyway. Folders whose name is not a valid source name, and files lying
    directly in the inbox, are skipped with one warning each. An exception from ``on_settled`` is logged
    and the batch is offered again on the next poll; the watcher itself never dies of it.
    """
    tracker = SettleTracker(settle_seconds)
    warned: set[str] = set()
    seen: set[str] = set()
    while not stop_event.is_set():
        present = set()
        entries = sorted(inbox.iterdir()) if inbox.is_dir() else []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if not entry.is_dir() or not re.fullmatch(SOURCE_NAME_PATTERN, entry.name):
                if entry.name not in warned:
                    warned.add(entry.name)
                    log.warning("inbox: ignoring %s: put files in %s/<source>/ with a source name matching %s",
                                entry, inbox, SOURCE_NAME_PATTERN)  # fmt: skip
                continue
            present.add(entry.name)
            batch = tracker.observe(entry.name, snapshot(entry), clock())
            if batch is None:
                continue
            try:
                on_settled(entry.name, batch)
            except Exception:  # noqa: BLE001 - the watcher outlives one failed hand-over and retries it
                log.exception("inbox: handing on %d file(s) of %r failed; retrying on the next poll", len(batch), entry.name)
                continue
            tracker.mark_reported(entry.name, batch)
        for gone in seen - present:
            tracker.forget(gone)
        seen = present
        stop_event.wait(poll_seconds)
