"""Stage `adapt`: AIN domain adaptation of the `train` stage's model to an unlabeled target (``faceops.adapt``).

``faceops.adapt.adapt_model`` runs ``adapt.rounds`` rounds (embed, cluster with the ``cluster`` section's
settings, train with the pseudo-identity and adversarial mutual-information losses) from ``--init``'s model on
the train split of ``adapt.sources`` kept to ``adapt.source_groups`` and the unlabeled ``adapt.target``.
Outputs: ``--out`` the adapted model (a promotion candidate, evaluated per group by `evaluate`), ``--pseudo``
every round's ``round-<r>/pseudo_labels.jsonl``, ``--live`` the step log over all rounds (a run resumed after
a kill logs from the round it resumed), metrics per round. Scratch and resume state: ``--ckpt``/<fingerprint>;
with ``--cache FOLDER`` a finished run with the same fingerprint is restored instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faceops import runcache
from faceops.config.adapt import AdaptParams
from faceops.config.base import BaseParams
from faceops.config.cluster import ClusterParams
from faceops.io.atomic import atomic_directory
from faceops.io.digest import sha256_file
from faceops.io.jsonl import write_jsonl
from faceops.io.layout import MODEL_FILE
from faceops.io.shards import split_urls
from faceops.io.steplog import StepLog
from stages._common import params_or_exit, parse_args, print_counts, progress_bar, write_metrics
from stages._finished import cache_folder, code_digest, restored

#: Added to ``base.seed`` so adaptation draws its own random streams.
SEED_OFFSET = 17_000
#: One file per round inside ``--pseudo``, named as the `cluster` stage names its pseudo-labels.
PSEUDO_LABELS = "pseudo_labels.jsonl"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["shards", "init", "out", "pseudo", "ckpt", "metrics", "live"], argv,
                      path_lists=["cache"])  # fmt: skip
    params = params_or_exit(args.params, base=BaseParams, adapt=AdaptParams, cluster=ClusterParams)
    cfg = params.adapt
    reads = {s.name: runcache.split_digests(args.shards, s.name, ["train"]) for s in cfg.sources}
    reads["target"] = runcache.split_digests(args.shards, cfg.target.source, [cfg.target.split])
    clustering = params.cluster.model_dump(mode="json", exclude={"train_on", "target"})
    parts = [cfg.model_dump(mode="json"), clustering, params.base.seed, reads, sha256_file(args.init / MODEL_FILE)]
    key = runcache.fingerprint("adapt", parts, code=code_digest("adapt"), device=runcache.device_type())
    outputs = {"out": args.out, "pseudo": args.pseudo, "metrics.json": args.metrics, "live": args.live}
    cache = cache_folder(args.cache)
    if cache is None:
        _run(args, params, args.ckpt / key)
    elif not restored("adapt", cache / key, outputs):
        runcache.reuse_or_run(cache / key, outputs, lambda: _run(args, params, args.ckpt / key))


def _run(args: Any, params: Any, workdir: Path) -> None:
    """torch is imported here, not at the top: a restore never needs it (faceops.runcache)."""
    import torch

    from faceops.adapt import adapt_model
    from faceops.io.checkpoint import save_checkpoint
    from faceops.train import init_distributed

    cfg = params.adapt
    dist = init_distributed(os.environ)
    if dist.device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    with progress_bar("adapt", cfg.rounds * cfg.steps, "steps") as progress:
        adapted = adapt_model(
            cfg, params.cluster, seed=params.base.seed + SEED_OFFSET, init_file=args.init / MODEL_FILE,
            source_urls={s.name: split_urls(args.shards / s.name, "train") for s in cfg.sources},
            target_urls=split_urls(args.shards / cfg.target.source, cfg.target.split), workdir=workdir, dist=dist,
            log=StepLog(args.live).log, progress=progress,
        )  # fmt: skip
    with atomic_directory(args.out) as staging:
        save_checkpoint(staging / MODEL_FILE, adapted.record, kind="model")
    with atomic_directory(args.pseudo) as staging:
        for found in adapted.rounds:
            (staging / f"round-{found.index}").mkdir()
            write_jsonl(staging / f"round-{found.index}" / PSEUDO_LABELS, found.rows)
    write_metrics(args.metrics, adapted.metrics)
    shutil.rmtree(workdir, ignore_errors=True)
    shown = ("pairwise/f", "pseudo_identities", "loss/ain", "target_epochs", "target_term")
    headline = {k: round(v, 4) if isinstance(v, float) else v for k, v in adapted.metrics.items()
                if "/" not in k or k.endswith(shown)}  # fmt: skip
    print_counts(f"adapt ({cfg.rounds} rounds of {cfg.steps} steps) -> {args.out / MODEL_FILE}", headline)


if __name__ == "__main__":
    main()
