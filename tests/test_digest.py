"""faceops.io.digest: chunked file hashing equals hashing the whole bytes."""

from __future__ import annotations

import hashlib

import numpy as np

from faceops.io.digest import sha256_file


def test_sha256_file_matches_hashlib_across_chunk_boundaries(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (1 << 20) * 2 + 17, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
