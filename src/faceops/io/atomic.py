"""Atomic directory outputs: fill a sibling temporary directory, then rename it into place.

Why: DVC hashes whatever sits at an output path. A stage killed half-way (SIGKILL included) must leave
either the previous complete output or nothing, never a half-written directory that looks valid.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_directory", "remove_stale_staging"]

_STAGING_PREFIX = ".tmp-"


def remove_stale_staging(final: str | Path) -> list[Path]:
    """Delete staging directories that a killed earlier run left beside ``final``.

    Only call it when no writer of ``final`` can be running (the workspace lock guarantees that).

    Returns:
        The directories removed.
    """
    final = Path(final)
    stale = sorted(final.parent.glob(f"{_STAGING_PREFIX}{final.name}-*"))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


@contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory that replaces ``final`` only if the block completes.

    On an exception the staging directory is removed and ``final`` is left untouched. The swap is two
    renames (old -> trash, staging -> final), so a reader never sees a partially filled ``final``.

    Args:
        final: the output directory to produce.

    Yields:
        The staging directory to fill (same filesystem as ``final``).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final)
    staging = final.parent / f"{_STAGING_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    trash = None
    if final.exists() or final.is_symlink():
        trash = final.parent / f"{_STAGING_PREFIX}{final.name}-old-{uuid.uuid4().hex[:8]}"
        os.replace(final, trash)
    os.replace(staging, final)
    if trash is not None:
        if trash.is_dir() and not trash.is_symlink():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink()
