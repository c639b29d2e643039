"""Stage `evaluate`: verification, expression, age, attributes, gender and per-group metrics of the trained model.

On every source's ``evaluate.split`` and every ``.bin`` set in ``evaluate.bin_sets``
(``faceops.eval.model.evaluate_model``); plots go to ``--plots`` as ``<source>_<plot>.json``. With
``--cache FOLDER`` the metrics and plots of a finished run with the same model, shards read,
verification sets, params and code are restored instead (``stages._finished``). The low-resolution protocol
(``evaluate.lowres``) super-resolves its probes with ``--sr``'s model when ``evaluate.lowres.super_resolve`` is on.
Each ``--candidates`` folder (e.g. ``models/adapt``) holds a further model scored on the same sources and split
(no ``.bin`` sets, no low-resolution protocol), its metrics under ``<folder name>/<source>/...``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faceops.config.base import BaseParams
from faceops.config.evaluate import EvaluateParams
from faceops.io.atomic import atomic_directory, atomic_write_text
from faceops.io.digest import sha256_file
from faceops.io.layout import MODEL_FILE
from faceops.io.shards import split_urls
from faceops.runcache import device_type, split_digests
from stages._common import params_or_exit, parse_args, print_counts, write_metrics
from stages._finished import cache_folder, reuse_or_run

HEADLINE = ("verif/acc", "verif/auc", "expr/acc", "age/mae", "age/eps", "attr/mean_acc", "gender/acc",
            "group/mean", "group/std", "group/ser")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["model", "shards", "verification", "metrics", "plots"], argv,
                      path_lists=["cache", "sr", "candidates"])  # fmt: skip
    params = params_or_exit(args.params, base=BaseParams, evaluate=EvaluateParams)
    cfg, device = params.evaluate, device_type()
    sr_file = None
    if cfg.lowres.enabled and cfg.lowres.super_resolve:
        if len(args.sr) != 1:
            raise SystemExit("evaluate.lowres.super_resolve is on: pass --sr with the sr stage's output (models/sr)")
        sr_file = args.sr[0] / MODEL_FILE
    bins = {name: args.verification / f"{name}.bin" for name in cfg.bin_sets}
    reads = {source: split_digests(args.shards, source, [cfg.split]) for source in cfg.sources}
    parts = [cfg.model_dump(mode="json"), params.base.seed, sha256_file(args.model / MODEL_FILE), reads,
             {name: sha256_file(path) if path.is_file() else None for name, path in bins.items()},
             sha256_file(sr_file) if sr_file is not None else None]  # fmt: skip
    parts.append({folder.name: sha256_file(folder / MODEL_FILE) for folder in args.candidates})
    reuse_or_run("evaluate", cache_folder(args.cache), parts, {"plots": args.plots, "metrics.json": args.metrics},
                 lambda: _run(args, params, bins, device, sr_file), device=device)  # fmt: skip


def _run(args: Any, params: Any, bins: dict[str, Path], device: str, sr_file: Path | None = None) -> None:
    """torch and the model code are imported here, not at the top: a restore never needs them."""
    import torch

    from faceops.eval.model import evaluate_model
    from faceops.sr.record import load_sr_model
    from faceops.train.export import load_trained_model

    cfg = params.evaluate
    for name, path in bins.items():
        if not path.is_file():
            raise SystemExit(f"evaluate.bin_sets names {name!r} but {path} does not exist; "
                             f"import it with `faceops import-bin FILE --name {name}`")  # fmt: skip
    torch.manual_seed(params.base.seed)
    model, record = load_trained_model(args.model / MODEL_FILE, map_location=device)
    sr_model = load_sr_model(sr_file, map_location=device)[0].to(device) if sr_file is not None else None
    urls = {source: split_urls(args.shards / source, cfg.split) for source in cfg.sources}
    common = {"image_size": params.base.image_size, "n_pairs": cfg.n_pairs, "folds": cfg.folds,
              "seed": params.base.seed, "batch_size": cfg.batch_size, "num_workers": cfg.num_workers, "device": device,
              "autocast_dtype": torch.bfloat16 if device == "cuda" else None}  # fmt: skip
    metrics, plots = evaluate_model(model.to(device), urls, bins=bins, sr_model=sr_model,
                                    lowres=cfg.lowres.resolutions if cfg.lowres.enabled else (), **common)  # fmt: skip
    for folder in args.candidates:
        candidate = load_trained_model(folder / MODEL_FILE, map_location=device)[0].to(device)
        scores = evaluate_model(candidate, urls, bins={}, **common)[0]
        metrics.update({f"{folder.name}/{key}": value for key, value in scores.items()})
    with atomic_directory(args.plots) as staging:
        for name, rows in plots.items():
            atomic_write_text(staging / f"{name}.json", json.dumps(rows, indent=1) + "\n")
    write_metrics(args.metrics, metrics)
    headline = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()
                if k.split("/", 1)[-1] in HEADLINE or k.endswith("/verif/acc")}  # fmt: skip
    print_counts(f"evaluate ({record['model_name']}, step {record['step']})", headline)


if __name__ == "__main__":
    main()
