"""Atomic file writes and JSON-lines manifests.

Why atomic: DVC hashes whatever is on disk, so a crash must never leave a half-written output under
its final name. Every write goes to a temporary file in the same directory (same file system, so
the rename is atomic), is flushed to disk, and is then renamed over the target with ``os.replace``.

Why this exact JSON-lines form: manifests must be byte-reproducible (``dvc.lock`` unchanged when the
content is), so keys are sorted, separators are fixed, non-ASCII stays UTF-8, and NaN (not JSON) is
an error instead of a silent ``NaN`` token.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_jsonl", "read_jsonl", "dumps_line"]

# Written files are meant to be read by others (DVC, users); mkstemp's 0600 would hide them.
_FILE_MODE = 0o644


@contextmanager
def _atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary handle whose content replaces ``path`` only if the block completes."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same directory, fsync, rename.

    The parent directory is created if needed. On any error the temporary file is removed and the
    previous content of ``path`` (if any) is left untouched.

    Args:
        path: destination file.
        data: the complete new content.
    """
    with _atomic_file(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` atomically (see :func:`atomic_write_bytes`); newlines are written as given."""
    atomic_write_bytes(path, text.encode(encoding))


def dumps_line(row: Mapping[str, Any]) -> str:
    """One JSON-lines record: sorted keys, compact separators, UTF-8 kept, no NaN; no newline.

    Raises:
        ValueError: the row holds NaN or infinity.
        TypeError: the row holds a value JSON cannot represent (e.g. a numpy array; call ``.tolist()``).
    """
    return json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` atomically as JSON lines, one row per line, in the order given.

    Args:
        path: destination file (an empty ``rows`` gives an empty file).
        rows: JSON-serialisable mappings.

    Raises:
        ValueError, TypeError: a row cannot be written (see :func:`dumps_line`); ``path`` is left as it was.
    """
    with _atomic_file(path) as fh:  # streamed: a manifest can be larger than we want to hold as one string
        for row in rows:
            fh.write((dumps_line(row) + "\n").encode("utf-8"))


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines file written by :func:`write_jsonl` (or any one-object-per-line file).

    Args:
        path: the file.

    Returns:
        The rows, in file order.

    Raises:
        ValueError: a line is blank, not valid JSON, or not a JSON object; the message names the file
            and the 1-based line number.
    """
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}:{lineno}: not valid JSON ({err.msg}); each line must be one JSON object"
                ) from err
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows
