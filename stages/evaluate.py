"""Stage `evaluate`: verification, expression, age, attributes, gender and per-group metrics of the trained model.

With ``--cache FOLDER`` the metrics and plots of a finished run with the same model, shards read,
verification sets, params and code are restored instead (``stages._finished``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from faceops.config.base import BaseParams
from faceops.config.evaluate import EvaluateParams
from faceops.io.atomic import atomic_directory, atomic_write_text
from faceops.io.digest import sha256_file
from faceops.io.layout import MODEL_FILE
from faceops.io.shards import split_urls
from faceops.runcache import device_type, split_digests
from stages._common import params_or_exit, parse_args, print_counts, write_metrics
from stages._finished import cache_folder, reuse_or_run

if TYPE_CHECKING:
    import torch




def _bin_metrics(model: torch.nn.Module, path: Path, *, batch_size: int, folds: int) -> dict[str, float]:
    """10-fold verification on an insightface .bin set (pairs stored as consecutive images)."""
    import torch

    from faceops.eval.evaluate import predict
    from faceops.eval.verification import cosine_scores, verification_metrics
    from faceops.io.verification_bin import load_verification_bin
    from faceops.train.batch import normalize_images

    images, same = load_verification_bin(path)
    decoded = [cv2.cvtColor(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for b in images]
    tensors = torch.from_numpy(np.stack([cv2.resize(im, (112, 112)) for im in decoded])).permute(0, 3, 1, 2)
    batches = [{"image": tensors[i : i + batch_size], "meta": [{}] * len(tensors[i : i + batch_size]),
                "key": [str(k) for k in range(i, min(i + batch_size, len(tensors)))]}
               for i in range(0, len(tensors), batch_size)]  # fmt: skip
    emb = predict(model, batches, normalize=normalize_images).embeddings
    idx = np.arange(len(same))
    return verification_metrics(cosine_scores(emb, 2 * idx, 2 * idx + 1), np.asarray(same, bool), folds=folds)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["model", "shards", "verification", "metrics", "plots"], argv, path_lists=["cache"])
    params = params_or_exit(args.params, base=BaseParams, evaluate=EvaluateParams)
    cfg = params.evaluate
    device = device_type()
    bins = {name: sha256_file(path) if (path := args.verification / f"{name}.bin").is_file() else None
            for name in cfg.bin_sets}  # fmt: skip
    reads = {source: split_digests(args.shards, source, [cfg.split]) for source in cfg.sources}
    parts = [cfg.model_dump(mode="json"), params.base.seed, sha256_file(args.model / MODEL_FILE), reads, bins]
    outputs = {"plots": args.plots, "metrics.json": args.metrics}
    reuse_or_run("evaluate", cache_folder(args.cache), parts, outputs, lambda: _run(args, params, device), device=device)  # fmt: skip


def _run(args: Any, params: Any, device: str) -> None:
    """Score the trained model on every source's ``evaluate.split`` and the .bin sets; write metrics and plots.

    torch and the model code are imported here, not at the top: a restore never needs them (stages._finished).
    """
    import torch

    from faceops.data.loader import make_loader
    from faceops.eval.evaluate import predict, score_predictions
    from faceops.train.batch import normalize_images
    from faceops.train.export import load_trained_model

    cfg = params.evaluate
    torch.manual_seed(params.base.seed)
    model, record = load_trained_model(args.model / MODEL_FILE, map_location=device)
    model.to(device)
    autocast = torch.bfloat16 if device == "cuda" else None
    metrics: dict[str, float | int] = {}
    with atomic_directory(args.plots) as staging:
        for source in cfg.sources:
            loader = make_loader(split_urls(args.shards / source, cfg.split), batch_size=cfg.batch_size,
                                 num_workers=cfg.num_workers, shuffle_buffer=0, seed=0, epoch=0)  # fmt: skip
            pred = predict(model, loader, normalize=normalize_images, device=device, autocast_dtype=autocast)
            scores, plots = score_predictions(pred, n_pairs=cfg.n_pairs, seed=params.base.seed, folds=cfg.folds)
            metrics.update({f"{source}/{key}": value for key, value in scores.items()})
            for name, rows in plots.items():
                atomic_write_text(staging / f"{source}_{name}.json", json.dumps(rows, indent=1) + "\n")
        for name in cfg.bin_sets:
            path = args.verification / f"{name}.bin"
            if not path.is_file():
                raise SystemExit(f"evaluate.bin_sets names {name!r} but {path} does not exist; "
                                 f"import it with `faceops import-bin FILE --name {name}`")  # fmt: skip
            found = _bin_metrics(model, path, batch_size=cfg.batch_size, folds=cfg.folds)
            metrics.update({f"bin/{name}/{key}": value for key, value in found.items()})
    write_metrics(args.metrics, metrics)
    headline = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()
                if k.split("/", 1)[-1] in HEADLINE or k.endswith("/verif/acc")}  # fmt: skip
    print_counts(f"evaluate ({record['model_name']}, step {record['step']})", headline)


HEADLINE = ("verif/acc", "verif/auc", "expr/acc", "age/mae", "age/eps", "attr/mean_acc", "gender/acc",
            "group/mean", "group/std", "group/ser")  # fmt: skip


if __name__ == "__main__":
    main()
