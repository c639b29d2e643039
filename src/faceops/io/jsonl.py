"""JSON-lines manifests, written atomically (``faceops.io.atomic``).

Why this exact JSON-lines form: manifests must be byte-reproducible (``dvc.lock`` unchanged when the
content is), so keys are sorted, separators are fixed, non-ASCII stays UTF-8, and NaN (not JSON) is
an error instead of a silent ``NaN`` token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from faceops.io.atomic import atomic_file

__all__ = ["write_jsonl", "read_jsonl", "dumps_line"]


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
    with atomic_file(path) as fh:  # streamed: a manifest can be larger than we want to hold as one string
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
