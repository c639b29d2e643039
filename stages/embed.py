"""Stage `embed`: L2-normalised embeddings of the trained model for every (source, split) in params.

Writes ``<out>/<source>/<split>.npy`` + ``.jsonl`` (``faceops.io.embeddings``); a split a source does
not have (no unlabeled photos, say) is skipped and reported, not an error. With ``--cache FOLDER`` the
outputs of a finished run with the same model, shards read, params and code are restored instead
(``stages._finished``): new photos of another source leave the embeddings as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from faceops.config import Params
from faceops.data.loader import make_loader, split_urls
from faceops.eval.evaluate import predict
from faceops.io.atomic import atomic_directory
from faceops.io.checkpoint import MODEL_FILE
from faceops.io.digest import sha256_file
from faceops.io.embeddings import EmbeddingSet, write_embeddings
from faceops.io.shards import read_index
from faceops.train.batch import normalize_images
from faceops.train.export import load_trained_model
from stages._common import params_or_exit, parse_args, print_counts, progress_bar, write_metrics
from stages._finished import cache_folder, reuse_or_run, split_digests

CODE_MODULES = ("faceops.eval", "faceops.train", "faceops.models", "faceops.data", "faceops.io", "stages.embed",
                "stages._common")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["model", "shards", "out", "metrics"], argv, path_lists=["cache"])
    params = params_or_exit(args.params)
    cfg = params.embed
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reads = {source: split_digests(args.shards, source, cfg.splits) for source in cfg.sources}
    parts = [cfg.model_dump(mode="json"), sha256_file(args.model / MODEL_FILE), reads]
    outputs = {"out": args.out, "metrics.json": args.metrics}
    reuse_or_run("embed", cache_folder(args.cache), parts, outputs, lambda: _run(args, params, device),
                 modules=CODE_MODULES, device=device)  # fmt: skip


def _run(args: Any, params: Params, device: str) -> None:
    """Embed every (source, split) of ``params.embed`` with the trained model; write sets and metrics."""
    cfg = params.embed
    model, record = load_trained_model(args.model / MODEL_FILE, map_location=device)
    model.to(device)
    autocast = torch.bfloat16 if device == "cuda" else None
    metrics: dict[str, int] = {}
    with atomic_directory(args.out) as staging:
        for source in cfg.sources:
            splits = read_index(args.shards / source)["splits"]
            for split in cfg.splits:
                if split not in splits or not splits[split]["samples"]:
                    metrics[f"{source}/{split}/samples"] = 0
                    continue
                loader = make_loader(split_urls(args.shards / source, split), batch_size=cfg.batch_size,
                                     num_workers=cfg.num_workers, shuffle_buffer=0, seed=0, epoch=0)  # fmt: skip
                with progress_bar(f"embed {source}/{split}", splits[split]["samples"], "faces") as advance:
                    pred = predict(model, loader, normalize=normalize_images, device=device,
                                   autocast_dtype=autocast, progress=advance)  # fmt: skip
                found = EmbeddingSet(pred.keys, pred.embeddings, [m.get("identity") for m in pred.metas])
                write_embeddings(staging / source, split, found)
                metrics[f"{source}/{split}/samples"] = len(found.ids)
                metrics[f"{source}/{split}/dim"] = int(found.vectors.shape[1])
    write_metrics(args.metrics, metrics)
    print_counts(f"embed ({record['model_name']}, step {record['step']}, {device})", metrics)


if __name__ == "__main__":
    main()
