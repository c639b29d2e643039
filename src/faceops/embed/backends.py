"""Embeddings of the faces in shard files: by a trained model or by dlib's ResNet, here or on a Dask cluster.

Why a module of its own: the ``embed`` stage calls these in its own process, and with ``runner: dask``
Dask workers call them on other machines. ``faceops.dask_runner.dask_map`` ships functions by reference,
so the worker side has to live in the installed library, next to the code it shares with the stage.

On Dask, one task embeds one shard file (hundreds to thousands of faces: seconds to minutes of work
against milliseconds of task overhead) on the worker's CPU with one torch thread (a worker is
one process per core). Each worker process loads the model once and keeps it while the model file is
unchanged. dlib's descriptor of a face does not depend on its batch, so its vectors are the same
bytes as in one process; a trained model's batches end at shard boundaries there, so its vectors
agree with one process's to float rounding only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from faceops.align import template_for_size
from faceops.data.loader import ShardDataset, make_loader
from faceops.eval.evaluate import predict
from faceops.io.embeddings import EmbeddingSet
from faceops.train.batch import normalize_images
from faceops.train.export import load_trained_model

if TYPE_CHECKING:
    from faceops.models.dlib_face import DlibFaceEmbedder

__all__ = ["concat_sets", "dlib_embeddings", "embed_shards_on_dask", "model_embeddings"]

Backend = Literal["swinface", "dlib"]

# In a Dask worker process: the loaded model per (path, mtime, size), and one dlib embedder per batch size.
_WORKER_MODELS: dict[tuple[str, int, int], torch.nn.Module] = {}
_WORKER_DLIB: dict[int, DlibFaceEmbedder] = {}


def model_embeddings(
    model: torch.nn.Module, urls: Sequence[Path], *, batch_size: int, num_workers: int = 0, device: str = "cpu",
    autocast_dtype: torch.dtype | None = None, progress: Callable[[int], None] | None = None,
) -> EmbeddingSet:  # fmt: skip
    """The ``Recognition`` embeddings of ``model`` for every face in ``urls``, with ids and identities."""
    loader = make_loader(list(urls), batch_size=batch_size, num_workers=num_workers, shuffle_buffer=0, seed=0,
                         epoch=0)  # fmt: skip
    pred = predict(model, loader, normalize=normalize_images, device=device, autocast_dtype=autocast_dtype,
                   progress=progress)  # fmt: skip
    return EmbeddingSet(pred.keys, pred.embeddings, [m.get("identity") for m in pred.metas])


def dlib_embeddings(
    embedder: DlibFaceEmbedder, urls: Sequence[Path], progress: Callable[[int], None] | None = None
) -> EmbeddingSet:
    """dlib's 128-d vectors for every face in ``urls``.

    A shard holds aligned 112x112 crops; their landmarks are the template the align stage warped them
    to, which is what ``DlibFaceEmbedder`` needs to place dlib's own face chip.
    """
    keys: list[str] = []
    identities: list[str | None] = []

    def faces() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream (crop, template) pairs, noting each sample's id and identity in reading order."""
        for sample in ShardDataset(list(urls), decode="numpy"):
            keys.append(sample["key"])
            identities.append(sample["meta"].get("identity"))
            yield sample["image"], template_for_size(sample["image"].shape[1])

    vectors = embedder.embed(faces(), progress=progress)
    return EmbeddingSet(keys, vectors, identities)


def concat_sets(parts: Sequence[EmbeddingSet]) -> EmbeddingSet:
    """One set holding ``parts`` (at least one) in order.

    Raises:
        ValueError: no parts (the vector length would be unknown).
    """
    if not parts:
        raise ValueError("concat_sets needs at least one embedding set")
    return EmbeddingSet([i for p in parts for i in p.ids], np.concatenate([p.vectors for p in parts]),
                        [i for p in parts for i in p.identities])  # fmt: skip


def _worker_model(model_file: str) -> torch.nn.Module:
    stat = Path(model_file).stat()
    key = (model_file, stat.st_mtime_ns, stat.st_size)
    if key not in _WORKER_MODELS:
        _WORKER_MODELS.clear()
        _WORKER_MODELS[key] = load_trained_model(Path(model_file), map_location="cpu")[0]
    return _WORKER_MODELS[key]


def _model_chunk(model_file: str, batch_size: int, urls: list[str]) -> list[EmbeddingSet]:
    """Dask task: one set per shard in ``urls``, by the model exported at ``model_file``."""
    torch.set_num_threads(1)
    model = _worker_model(model_file)
    return [model_embeddings(model, [Path(url)], batch_size=batch_size) for url in urls]


def _dlib_chunk(batch_size: int, urls: list[str]) -> list[EmbeddingSet]:
    """Dask task: one set per shard in ``urls``, by dlib's ResNet in this worker process."""
    from faceops.models.dlib_face import DlibFaceEmbedder  # dlib is an optional extra

    if batch_size not in _WORKER_DLIB:
        _WORKER_DLIB[batch_size] = DlibFaceEmbedder(workers=1, batch_size=batch_size)
    return [dlib_embeddings(_WORKER_DLIB[batch_size], [Path(url)]) for url in urls]


def embed_shards_on_dask(
    urls: Sequence[Path], *, backend: Backend, batch_size: int, model_file: Path | None = None,
    workers: int = 1, address: str | None = None, progress: Callable[[int], None] | None = None,
) -> EmbeddingSet:  # fmt: skip
    """Every face in ``urls`` embedded on a Dask cluster, one shard per task (``faceops.dask_runner.dask_map``).

    Args:
        urls: shard files (at least one); every worker must read them under these paths (a shared filesystem).
        backend: ``"swinface"`` (the model exported at ``model_file``) or ``"dlib"``.
        batch_size: faces per forward pass (or per dlib batch).
        workers: processes of a temporary local cluster; ignored with ``address``.
        address: a running scheduler (``tcp://host:port``), or None for a temporary local cluster.
        progress: called with each finished shard's face count.

    Raises:
        ValueError: no ``urls``; ``backend`` is ``"swinface"`` without ``model_file``; a bad ``address``.
        ImportError: dask.distributed (or, for dlib, dlib-bin) is missing.
    """
    from faceops.dask_runner import dask_map

    if not urls:
        raise ValueError("embed_shards_on_dask needs at least one shard file")
    if backend == "swinface":
        if model_file is None:
            raise ValueError("backend 'swinface' needs model_file: the exported model the workers load")
        work = functools.partial(_model_chunk, str(Path(model_file).resolve()), batch_size)
    else:
        work = functools.partial(_dlib_chunk, batch_size)
    parts = []
    for found in dask_map(work, [str(Path(u).resolve()) for u in urls], max_chunk=1, workers=workers, address=address):
        parts.append(found)
        if progress is not None:
            progress(len(found.ids))
    return concat_sets(parts)
