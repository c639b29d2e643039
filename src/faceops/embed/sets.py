"""The ``embed`` stage's work: the embedder ``embed.backend`` / ``embed.runner`` name, over every (source, split).

:func:`make_embedder` gives a title and a function that embeds one split's shard files (the trained model
or dlib's ResNet, in this process or one shard per Dask task: :mod:`faceops.embed.backends`);
:func:`embed_splits` runs it over the shard sets of the sources, one split at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from faceops.config.embed import EmbedParams
from faceops.embed.backends import dlib_embeddings, embed_shards_on_dask, model_embeddings
from faceops.io.embeddings import EmbeddingSet
from faceops.io.shards import read_index, split_urls
from faceops.processes import available_cpus
from faceops.progress import ProgressBar, no_progress
from faceops.train.export import load_trained_model

__all__ = ["EmbedSplit", "embed_splits", "make_embedder"]

#: Embeds one split: (its shard files, progress advance) -> the set, in any row order.
EmbedSplit = Callable[[list[Path], Callable[[int], None]], EmbeddingSet]


def make_embedder(cfg: EmbedParams, *, model_file: Path, device: str = "cpu") -> tuple[str, EmbedSplit]:
    """(title, embedder) of ``cfg.backend`` run by ``cfg.runner``.

    Args:
        cfg: the ``embed`` params section.
        model_file: the exported model (read by the ``swinface`` backend only).
        device: where the trained model runs in this process (bf16 autocast on CUDA); Dask workers use CPUs.
    """
    if cfg.runner == "dask":
        workers = available_cpus()
        dask_model = model_file if cfg.backend == "swinface" else None

        def on_dask(urls: list[Path], advance: Callable[[int], None]) -> EmbeddingSet:
            return embed_shards_on_dask(urls, backend=cfg.backend, batch_size=cfg.batch_size, model_file=dask_model,
                                        workers=workers, address=cfg.dask_address, progress=advance)  # fmt: skip

        where = cfg.dask_address or f"a local cluster of {workers} processes"
        return f"embed ({cfg.backend} on Dask: {where})", on_dask
    if cfg.backend == "dlib":
        from faceops.models.dlib_face import DlibFaceEmbedder, dlib_version  # dlib is an optional extra

        embedder = DlibFaceEmbedder(batch_size=cfg.batch_size)

        def with_dlib(urls: list[Path], advance: Callable[[int], None]) -> EmbeddingSet:
            return dlib_embeddings(embedder, urls, progress=advance)

        return f"embed (dlib {dlib_version()} ResNet, {embedder.workers} processes)", with_dlib
    model, record = load_trained_model(model_file, map_location=device)
    model.to(device)
    autocast = torch.bfloat16 if device == "cuda" else None

    def with_model(urls: list[Path], advance: Callable[[int], None]) -> EmbeddingSet:
        return model_embeddings(model, urls, batch_size=cfg.batch_size, num_workers=cfg.num_workers, device=device,
                                autocast_dtype=autocast, progress=advance)  # fmt: skip

    return f"embed ({record['model_name']}, step {record['step']}, {device})", with_model


def embed_splits(
    shards: Path, sources: Sequence[str], splits: Sequence[str], embed_split: EmbedSplit, *,
    progress: ProgressBar = no_progress,
) -> Iterator[tuple[str, str, EmbeddingSet | None]]:  # fmt: skip
    """``(source, split, set)`` for every source's shard set (``shards/<source>/``) and split, in order;
    ``set`` is None for a split the source does not have or that holds no sample (not an error)."""
    for source in sources:
        present = read_index(shards / source)["splits"]
        for split in splits:
            if split not in present or not present[split]["samples"]:
                yield source, split, None
                continue
            with progress(f"embed {source}/{split}", present[split]["samples"], "faces") as advance:
                found = embed_split(split_urls(shards / source, split), advance)
            yield source, split, found
