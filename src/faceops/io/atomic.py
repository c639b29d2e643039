"""Atomic outputs: every file and directory is filled under a temporary name and renamed into place.

Why: DVC hashes whatever sits at an output path. A writer killed half-way (SIGKILL included) must leave
either the previous complete output or nothing, never a half-written file or directory that looks valid.
This module is the one place that writes that way; every writer in faceops goes through it.

Temporary names carry their writer: ``.tmp-<name>-<pid>-<start time>-<random>`` for a staging
directory, ``.<name>.<pid>-<start time>.<random>.tmp`` for a file (see
:func:`faceops.processes.process_identity`). So a leftover can be told from the live work of another
process: :func:`remove_stale_temporaries` deletes one only when its writer is provably gone, never the
folder a running writer is still filling.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from faceops.processes import identity_alive, process_identity

__all__ = [
    "atomic_directory",
    "atomic_file",
    "atomic_write_bytes",
    "atomic_write_text",
    "remove_stale_temporaries",
]

_STAGING_PREFIX = ".tmp-"
_OWNER = r"(?P<owner>\d+-\d+\.\d+)"
# Written files are meant to be read by others (DVC, users), as a plain open() would make them.
_FILE_MODE = 0o644
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_identity: tuple[int, str] | None = None


def _owner() -> str:
    """This process's identity, computed once per process (a forked child gets its own)."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, process_identity(pid))
    return _identity[1]


@contextmanager
def atomic_file(path: str | os.PathLike[str], *, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary handle whose content replaces ``path`` only if the block completes.

    The parent directory is created when missing. On any error the temporary file is removed and the
    previous content of ``path`` (if any) is left untouched.

    Args:
        path: destination file.
        durable: fsync before the rename (outputs); False for caches, where a lost entry is only recomputed.
    """
    folder, name = os.path.split(os.fspath(path))
    folder = folder or "."
    # A unique name of our own (not mkstemp: it is a fifth of a cache write's cost), created exclusively.
    tmp = f"{folder}/.{name}.{_owner()}.{os.urandom(6).hex()}.tmp"
    try:
        fd = os.open(tmp, _CREATE_FLAGS, _FILE_MODE)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, _CREATE_FLAGS, _FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, durable=durable) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` atomically (see :func:`atomic_file`); newlines are written as given."""
    atomic_write_bytes(path, text.encode(encoding))


def _owner_of(leftover: str, final_name: str) -> str | None:
    """The writer identity in a temporary name of ``final_name``; None when the name has none."""
    escaped = re.escape(final_name)
    patterns = (rf"{re.escape(_STAGING_PREFIX)}{escaped}-(?:old-)?{_OWNER}-[0-9a-f]+",
                rf"\.{escaped}\.{_OWNER}\..+\.tmp")  # fmt: skip
    for pattern in patterns:
        found = re.fullmatch(pattern, leftover)
        if found:
            return found["owner"]
    return None


def remove_stale_temporaries(final: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files and staging directories of ``final`` whose writer is gone.

    A leftover whose writer still runs is kept, whoever calls this: a live writer's folder is never
    removed under it. Names without a writer (written before names carried one) count as gone.

    Returns:
        What was removed, sorted.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return []
    candidates = [*final.parent.glob(f"{_STAGING_PREFIX}{final.name}-*"), *final.parent.glob(f".{final.name}.*.tmp")]
    removed = []
    for path in sorted(candidates):
        owner = _owner_of(path.name, final.name)
        if owner is not None and identity_alive(owner):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def atomic_directory(final: str | os.PathLike[str]) -> Iterator[Path]:
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
    remove_stale_temporaries(final)
    staging = final.parent / f"{_STAGING_PREFIX}{final.name}-{_owner()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    trash = None
    if final.exists() or final.is_symlink():
        trash = final.parent / f"{_STAGING_PREFIX}{final.name}-old-{_owner()}-{uuid.uuid4().hex[:8]}"
        os.replace(final, trash)
    os.replace(staging, final)
    if trash is not None:
        if trash.is_dir() and not trash.is_symlink():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink()
