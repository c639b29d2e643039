"""What the `pretrain` and `train` stages share: the finished-run cache around ``faceops.train.run_training``.

The fingerprint (resume folder ``ckpt/<fp>/`` and cache key) covers the params section, seed, world size,
the bytes of every train shard read, the init weights, the code (dvc.yaml's deps), device and torch version.
Run with ``python -m stages.<stage>`` (one process) or ``torchrun --nproc_per_node N -m stages.<stage>``.
"""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from faceops import runcache
from faceops.config.pretrain import PretrainParams
from faceops.config.train import TrainParams
from faceops.io.atomic import atomic_directory
from faceops.io.layout import MODEL_FILE, RESUME_FILE
from faceops.io.shards import split_urls
from faceops.io.steplog import StepLog
from stages._common import console, progress_bar, write_metrics
from stages._finished import cache_folder, code_digest, restored


def train_stage(
    stage: str, cfg: PretrainParams | TrainParams, *, seed: int, args: Any, init_file: Path | None = None
) -> None:
    """Train (or restore the finished run with the same fingerprint); rank 0 writes ``--out``, metrics, log."""
    rank, world_size = (int(os.environ.get(name, default)) for name, default in (("RANK", 0), ("WORLD_SIZE", 1)))
    data = {s.name: runcache.shard_digests(split_urls(args.shards / s.name, "train")) for s in cfg.sources}
    init_bytes = init_file.read_bytes() if init_file is not None else b""
    parts = [cfg.model_dump(mode="json"), seed, world_size, data, init_bytes]
    key = runcache.fingerprint(stage, parts, code=code_digest(stage), device=runcache.device_type())
    outputs, cache = {"out": args.out, "metrics.json": args.metrics, "live": args.live}, cache_folder(args.cache)
    if cache is not None and runcache.is_finished(cache / key, outputs):
        if rank == 0:
            restored(stage, cache / key, outputs)
        return
    _train(stage, cfg, seed=seed, args=args, init_file=init_file, resume_file=args.ckpt / key / RESUME_FILE)
    if cache is not None and rank == 0:
        runcache.store_finished(cache / key, outputs)
        runcache.prune_finished(cache)


def _train(
    stage: str, cfg: PretrainParams | TrainParams, *, seed: int, args: Any, init_file: Path | None, resume_file: Path
) -> None:
    """torch is imported here, not at the top: a restore never needs it (faceops.runcache)."""
    import torch

    from faceops.io.checkpoint import save_checkpoint
    from faceops.train import close_distributed, init_distributed
    from faceops.train.job import run_training

    dist = init_distributed(os.environ)
    try:
        if dist.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        log = StepLog(args.live).log if dist.is_main else None
        with progress_bar(stage, cfg.steps, "steps") if dist.is_main else nullcontext() as progress:
            trained = run_training(cfg, seed=seed, shard_urls={s.name: split_urls(args.shards / s.name, "train")
                                   for s in cfg.sources}, resume_file=resume_file, dist=dist, init_file=init_file,
                                   log=log, progress=progress)  # fmt: skip
        if dist.is_main:
            with atomic_directory(args.out) as staging:
                save_checkpoint(staging / MODEL_FILE, trained.record, kind="model")
            write_metrics(args.metrics, trained.metrics)
            shutil.rmtree(resume_file.parent, ignore_errors=True)
            console.print(f"{stage}: {trained.metrics['steps']} steps (resumed from {trained.resumed_from}), loss "
                          f"{trained.metrics.get('loss/total', float('nan')):.4f}, {trained.images_per_second:.1f} "
                          f"images/s -> {args.out / MODEL_FILE}")  # fmt: skip
    finally:
        close_distributed()
