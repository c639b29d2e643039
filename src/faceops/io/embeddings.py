"""Embedding sets on disk: ``<name>.npy`` (float32 [N, D]) + ``<name>.jsonl`` (one ``{id, identity}`` per row).

Why two files: the vectors stay a plain ``.npy`` that numpy memory-maps and loads without pickle
(``allow_pickle=False``), and the ids/labels stay readable text that diffs and greps. Rows are
sorted by id, so the same model and data give byte-identical files whatever order a loader used.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceops.io.atomic import atomic_write_bytes
from faceops.io.jsonl import read_jsonl, write_jsonl

__all__ = ["EmbeddingSet", "read_embeddings", "write_embeddings"]


@dataclass(frozen=True)
class EmbeddingSet:
    """N embeddings with their sample ids and (possibly hidden, possibly ``None``) identities."""

    ids: list[str]
    vectors: np.ndarray
    identities: list[str | None]

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.ids) or len(self.ids) != len(self.identities):
            raise ValueError(f"need vectors [N, D] with N ids and N identities; got vectors {self.vectors.shape}, "
                             f"{len(self.ids)} ids, {len(self.identities)} identities")  # fmt: skip


def write_embeddings(folder: Path, name: str, data: EmbeddingSet) -> None:
    """Write ``folder/name.npy`` and ``folder/name.jsonl`` atomically, rows sorted by id."""
    order = sorted(range(len(data.ids)), key=data.ids.__getitem__)
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(data.vectors[order], dtype=np.float32), allow_pickle=False)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"{name}.npy", buffer.getvalue())
    write_jsonl(folder / f"{name}.jsonl", ({"id": data.ids[i], "identity": data.identities[i]} for i in order))


def read_embeddings(folder: Path, name: str) -> EmbeddingSet:
    """Read a set written by ``write_embeddings`` (no pickle: a tampered .npy cannot run code).

    Raises:
        FileNotFoundError: the set does not exist (the message says which stage writes it).
        ValueError: the two files disagree in length.
    """
    vectors_path, rows_path = folder / f"{name}.npy", folder / f"{name}.jsonl"
    if not vectors_path.is_file() or not rows_path.is_file():
        raise FileNotFoundError(f"no embedding set {name!r} in {folder}: the `embed` stage writes it "
                                f"(list the source and split under embed.sources / embed.splits)")  # fmt: skip
    vectors = np.load(vectors_path, allow_pickle=False)
    rows = read_jsonl(rows_path)
    return EmbeddingSet(ids=[r["id"] for r in rows], vectors=vectors, identities=[r["identity"] for r in rows])
