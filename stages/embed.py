"""Stage `embed`: L2-normalised embeddings for every (source, split) in params, by ``embed.backend``.

``swinface``: the trained model (``--model``). ``dlib``: dlib's pretrained ResNet (128-d,
``faceops.models.dlib_face``; ``--model`` is not read), so real photos can be clustered before any
training here. It embeds the same aligned 112x112 faces the shards hold, with the ArcFace template the
align stage warped them to as their landmarks: on 858 real photos dlib's chips cut from these crops
verify as well as chips cut from the photos themselves (bench/dlib_embed.py), and the stage needs no
input beyond the shards. ``embed.runner: dask`` embeds one shard per Dask task (``faceops.embed``).

Writes ``<out>/<source>/<split>.npy`` + ``.jsonl`` (``faceops.io.embeddings``); a split a source does
not have (no unlabeled photos, say) is skipped and reported, not an error. With ``--cache FOLDER`` the
outputs of a finished run with the same backend (model file, or dlib version and model files), shards
read, params and code are restored instead: new photos of another source leave the embeddings as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faceops.config.embed import EmbedParams
from faceops.io.atomic import atomic_directory
from faceops.io.digest import sha256_file
from faceops.io.embeddings import write_embeddings
from faceops.io.layout import MODEL_FILE
from faceops.runcache import device_type, split_digests
from stages._common import params_or_exit, parse_args, print_counts, progress_bar, write_metrics
from stages._finished import cache_folder, reuse_or_run


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["model", "shards", "out", "metrics"], argv, path_lists=["cache"])
    cfg = params_or_exit(args.params, embed=EmbedParams).embed
    reads = {source: split_digests(args.shards, source, cfg.splits) for source in cfg.sources}
    if cfg.backend == "dlib":
        from faceops.models.dlib_face import dlib_version, model_files  # faceops.models imports torch

        embedder = {"dlib": dlib_version(), **{name: sha256_file(path) for name, path in model_files().items()}}
    else:
        embedder = sha256_file(args.model / MODEL_FILE)
    device = device_type() if cfg.backend == "swinface" and cfg.runner != "dask" else "cpu"  # Dask workers: CPUs
    outputs = {"out": args.out, "metrics.json": args.metrics}
    reuse_or_run("embed", cache_folder(args.cache), [cfg.model_dump(mode="json"), embedder, reads], outputs,
                 lambda: _run(args, cfg, device), device=device)  # fmt: skip


def _run(args: Any, cfg: EmbedParams, device: str) -> None:
    """torch and the model code are imported here, not at the top: a restore never needs them."""
    from faceops.embed import embed_splits, make_embedder

    title, embed_split = make_embedder(cfg, model_file=args.model / MODEL_FILE, device=device)
    metrics: dict[str, int] = {}
    with atomic_directory(args.out) as staging:
        for source, split, found in embed_splits(args.shards, cfg.sources, cfg.splits, embed_split,
                                                 progress=progress_bar):  # fmt: skip
            metrics[f"{source}/{split}/samples"] = 0 if found is None else len(found.ids)
            if found is not None:
                write_embeddings(staging / source, split, found)
                metrics[f"{source}/{split}/dim"] = int(found.vectors.shape[1])
    write_metrics(args.metrics, {"backend": cfg.backend, **metrics})
    print_counts(title, metrics)


if __name__ == "__main__":
    main()
