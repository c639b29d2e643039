"""Stage `embed`: L2-normalised embeddings for every (source, split) in params, by ``embed.backend``.

``swinface``: the trained model (``--model``). ``dlib``: dlib's pretrained ResNet (128-d,
``faceops.models.dlib_face``; ``--model`` is not read), so real photos can be clustered before any
training here. It embeds the same aligned 112x112 faces the shards hold, with the ArcFace template the
align stage warped them to as their landmarks: on 858 real photos dlib's chips cut from these crops
verify as well as chips cut from the photos themselves (bench/dlib_embed.py), and the stage needs no
input beyond the shards.

Writes ``<out>/<source>/<split>.npy`` + ``.jsonl`` (``faceops.io.embeddings``); a split a source does
not have (no unlabeled photos, say) is skipped and reported, not an error. With ``--cache FOLDER`` the
outputs of a finished run with the same backend (model file, or dlib version and model files), shards
read, params and code are restored instead (``stages._finished``): new photos of another source leave
the embeddings as they are. ``embed.runner: dask`` embeds one shard per Dask task on the cluster's CPUs
(``faceops.embed``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from faceops.config.embed import EmbedParams
from faceops.io.atomic import atomic_directory
from faceops.io.digest import sha256_file
from faceops.io.embeddings import EmbeddingSet, write_embeddings
from faceops.io.layout import MODEL_FILE
from faceops.io.shards import read_index, split_urls
from faceops.runcache import device_type, split_digests
from stages._common import params_or_exit, parse_args, print_counts, progress_bar, write_metrics
from stages._finished import cache_folder, reuse_or_run

#: Embeds one split: (its shard files, progress advance) -> the set, in any row order.
EmbedSplit = Callable[[list[Path], Callable[[int], None]], EmbeddingSet]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["model", "shards", "out", "metrics"], argv, path_lists=["cache"])
    cfg = params_or_exit(args.params, embed=EmbedParams).embed
    reads = {source: split_digests(args.shards, source, cfg.splits) for source in cfg.sources}
    outputs = {"out": args.out, "metrics.json": args.metrics}
    on_dask = cfg.runner == "dask"
    if cfg.backend == "dlib":
        from faceops.models.dlib_face import (  # faceops.models imports torch
            dlib_version,
            model_files,
        )

        dlib = {"dlib": dlib_version(), **{name: sha256_file(path) for name, path in model_files().items()}}
        compute = (lambda: _on_dask(args.model, cfg)) if on_dask else (lambda: _dlib(cfg))
        reuse_or_run("embed", cache_folder(args.cache), [cfg.model_dump(mode="json"), dlib, reads], outputs,
                     lambda: _write_sets(args, cfg, *compute()))  # fmt: skip
        return
    device = "cpu" if on_dask else device_type()  # Dask workers embed on their CPUs
    compute = (lambda: _on_dask(args.model, cfg)) if on_dask else (lambda: _swinface(args.model, cfg, device))
    parts = [cfg.model_dump(mode="json"), sha256_file(args.model / MODEL_FILE), reads]
    reuse_or_run("embed", cache_folder(args.cache), parts, outputs, lambda: _write_sets(args, cfg, *compute()), device=device)  # fmt: skip


def _swinface(model_dir: Path, cfg: EmbedParams, device: str) -> tuple[str, EmbedSplit]:
    """(title, embedder) of the trained model in ``model_dir``, in this process.

    torch and the model code are imported here, not at the top: a restore never needs them (stages._finished).
    """
    import torch

    from faceops.embed import model_embeddings
    from faceops.train.export import load_trained_model

    model, record = load_trained_model(model_dir / MODEL_FILE, map_location=device)
    model.to(device)
    autocast = torch.bfloat16 if device == "cuda" else None

    def embed_split(urls: list[Path], advance: Callable[[int], None]) -> EmbeddingSet:
        return model_embeddings(model, urls, batch_size=cfg.batch_size, num_workers=cfg.num_workers, device=device,
                                autocast_dtype=autocast, progress=advance)  # fmt: skip

    return f"embed ({record['model_name']}, step {record['step']}, {device})", embed_split


def _dlib(cfg: EmbedParams) -> tuple[str, EmbedSplit]:
    """(title, embedder) of dlib's ResNet on the shards' aligned faces, one process per available CPU."""
    from faceops.embed import dlib_embeddings
    from faceops.models.dlib_face import DlibFaceEmbedder, dlib_version

    embedder = DlibFaceEmbedder(batch_size=cfg.batch_size)

    def embed_split(urls: list[Path], advance: Callable[[int], None]) -> EmbeddingSet:
        return dlib_embeddings(embedder, urls, progress=advance)

    return f"embed (dlib {dlib_version()} ResNet, {embedder.workers} processes)", embed_split


def _on_dask(model_dir: Path, cfg: EmbedParams) -> tuple[str, EmbedSplit]:
    """(title, embedder) of ``cfg.backend`` on a Dask cluster, one shard per task (``embed.runner: dask``)."""
    from faceops.embed import embed_shards_on_dask
    from faceops.processes import available_cpus

    workers = available_cpus()
    model_file = model_dir / MODEL_FILE if cfg.backend == "swinface" else None

    def embed_split(urls: list[Path], advance: Callable[[int], None]) -> EmbeddingSet:
        return embed_shards_on_dask(urls, backend=cfg.backend, batch_size=cfg.batch_size, model_file=model_file,
                                    workers=workers, address=cfg.dask_address, progress=advance)  # fmt: skip

    where = cfg.dask_address or f"a local cluster of {workers} processes"
    return f"embed ({cfg.backend} on Dask: {where})", embed_split


def _write_sets(args: Any, cfg: EmbedParams, title: str, embed_split: EmbedSplit) -> None:
    """Embed every (source, split) of ``cfg`` with ``embed_split``; write the sets and the metrics."""
    metrics: dict[str, int] = {}
    with atomic_directory(args.out) as staging:
        for source in cfg.sources:
            splits = read_index(args.shards / source)["splits"]
            for split in cfg.splits:
                if split not in splits or not splits[split]["samples"]:
                    metrics[f"{source}/{split}/samples"] = 0
                    continue
                with progress_bar(f"embed {source}/{split}", splits[split]["samples"], "faces") as advance:
                    found = embed_split(split_urls(args.shards / source, split), advance)
                write_embeddings(staging / source, split, found)
                metrics[f"{source}/{split}/samples"] = len(found.ids)
                metrics[f"{source}/{split}/dim"] = int(found.vectors.shape[1])
    write_metrics(args.metrics, {"backend": cfg.backend, **metrics})
    print_counts(title, metrics)


if __name__ == "__main__":
    main()
