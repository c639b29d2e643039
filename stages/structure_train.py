"""Stage `structure-train`: one corner/edge network trained jointly on the structure shards' train splits.

``faceops.structure.training.train_structure`` (the project's ``fit`` loop: corner heatmap loss + the edge term)
exports ``<out>/model.pt`` (``torch.load(weights_only=True)``-safe, rebuilt by ``faceops.train.export.build_model``)
and logs every step to ``--live`` (dvclive's layout). A killed run continues from ``<ckpt>/<fingerprint>/last.pt``;
with ``--cache FOLDER`` a finished run with the same params, seed, shard bytes, code, device and torch version is
restored instead of trained again (``stages._finished``).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faceops import runcache
from faceops.config.base import BaseParams
from faceops.config.structure_train import StructureTrainParams
from faceops.io.atomic import atomic_directory
from faceops.io.layout import MODEL_FILE, RESUME_FILE
from faceops.io.shards import split_urls
from faceops.io.steplog import StepLog
from stages._common import console, params_or_exit, parse_args, progress_bar, write_metrics
from stages._finished import cache_folder, code_digest, reuse_or_run

STAGE = "structure-train"
#: Added to ``base.seed``: this stage's own random stream.
SEED_OFFSET = 19_000


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["shards", "out", "ckpt", "metrics", "live"], argv, path_lists=["cache"])
    params = params_or_exit(args.params, base=BaseParams, structure_train=StructureTrainParams)
    cfg, seed, device = params.structure_train, params.base.seed + SEED_OFFSET, runcache.device_type()
    urls = {s.name: split_urls(args.shards / s.name, "train") for s in cfg.sources}
    parts = [cfg.model_dump(mode="json"), seed, {name: runcache.shard_digests(u) for name, u in urls.items()}]
    run_dir = args.ckpt / runcache.fingerprint(STAGE, parts, code=code_digest(STAGE), device=device)
    outputs = {"out": args.out, "metrics.json": args.metrics, "live": args.live}
    reuse_or_run(STAGE, cache_folder(args.cache), parts, outputs,
                 lambda: _train(args, cfg, seed, urls, device, run_dir), device=device)  # fmt: skip


def _train(args: Any, cfg: StructureTrainParams, seed: int, urls: dict, device: str, run_dir: Path) -> None:
    """torch is imported here, not at the top: a restore never needs it (faceops.runcache)."""
    import torch

    from faceops.io.checkpoint import save_checkpoint
    from faceops.structure.training import train_structure

    if device == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    with progress_bar(STAGE, cfg.steps, "steps") as advance:
        trained = train_structure(cfg, seed=seed, shard_urls=urls, device=device, resume_file=run_dir / RESUME_FILE,
                                  log=StepLog(args.live).log, progress=advance)  # fmt: skip
    with atomic_directory(args.out) as staging:
        save_checkpoint(staging / MODEL_FILE, trained.record, kind="model")
    write_metrics(args.metrics, trained.metrics)
    shutil.rmtree(run_dir, ignore_errors=True)
    console.print(f"{STAGE}: {trained.metrics['steps']} steps (resumed from {trained.resumed_from}), loss "
                  f"{trained.metrics.get('loss/total', float('nan')):.3f} -> {args.out / MODEL_FILE}")  # fmt: skip


if __name__ == "__main__":
    main()
