"""Content hashes: of files (read in chunks, so a large shard or model never sits in memory whole) and of runs."""

from __future__ import annotations

import hashlib
import json
import os

__all__ = ["run_fingerprint", "sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def run_fingerprint(*parts: object) -> str:
    """16 hex digits identifying a training run's inputs (params, data indexes, init weights, world size).

    ``bytes`` parts are hashed as they are, anything else as canonical JSON, so a changed config or
    data set gets a new resume folder and never resumes a checkpoint of another run.
    """
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode()
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]
