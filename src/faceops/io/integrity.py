"""Is a stage output whole? Compare what its own listing names with what is on disk.

Why: DVC compares an output with the hash it recorded, so an output that was *recorded* incomplete
(a killed run's partial folder committed by a racing process) looks up to date for ever. The listings a
stage writes inside its output say what must be there: the align manifest's ``face`` paths, a shard
index's shard files. An output whose listing names files that are missing is incomplete, whatever
dvc.lock says, and its stage has to run again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from faceops.io.layout import MANIFEST, SHARD_INDEX

__all__ = ["Incomplete", "check_output"]

@dataclass(frozen=True)
class Incomplete:
    """A listing inside an output that names files the output lacks."""

    listing: Path
    listed: int
    missing: list[str]

    def describe(self) -> str:
        """What is wrong, for humans: ``lists 1,200 files, 1,071 missing (faces/a.jpg, ...)``."""
        shown = ", ".join(self.missing[:3]) + (", ..." if len(self.missing) > 3 else "")
        return f"lists {self.listed:,} files, {len(self.missing):,} missing ({shown})"


def _manifest_files(path: Path) -> list[str]:
    """Files named by a manifest's ``face`` column (relative to the manifest's folder)."""
    names = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                return ["<unreadable manifest>"]
            if isinstance(row, dict) and isinstance(row.get("face"), str):
                names.append(row["face"])
    return names


def _index_files(path: Path) -> list[str]:
    """Shard files named by a shard ``index.json``."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ["<unreadable index>"]
    splits = info.get("splits") if isinstance(info, dict) else None
    if not isinstance(splits, dict):
        return []
    return [name for entry in splits.values() if isinstance(entry, dict) for name in entry.get("shards", [])]


_LISTINGS = {MANIFEST: _manifest_files, SHARD_INDEX: _index_files}


def check_output(out: Path) -> list[Incomplete]:
    """Listings inside the output directory ``out`` that name missing files; empty when it is whole.

    A file output, a missing output (DVC reports that itself) and a folder without listings pass.
    """
    out = Path(out)
    if not out.is_dir():
        return []
    problems = []
    # the output itself and one level below it (data/shards/<source>/index.json)
    for folder in [out, *sorted(child for child in out.iterdir() if child.is_dir())]:
        for name, files_of in _LISTINGS.items():
            listing = folder / name
            if listing.is_file():
                listed = files_of(listing)
                missing = _missing(folder, listed)
                if missing:
                    problems.append(Incomplete(listing=listing, listed=len(listed), missing=missing))
    return problems


def _missing(folder: Path, names: list[str]) -> list[str]:
    """The names (relative to ``folder``) that are not files there; one directory listing per subfolder."""
    present: dict[Path, set[str]] = {}
    missing = []
    for name in names:
        path = folder / name
        if path.parent not in present:
            try:
                present[path.parent] = {e.name for e in os.scandir(path.parent) if e.is_file()}
            except OSError:
                present[path.parent] = set()
        if path.name not in present[path.parent]:
            missing.append(name)
    return missing
