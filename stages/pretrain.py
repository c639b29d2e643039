"""Stage `pretrain`: recognition-only SwinFace (CosFace) on the train splits; `pretrain.enabled: false` skips it.

Skipping still writes the stage's outputs (a model file that says ``enabled: False``, metrics, an empty
dvclive folder), so the DVC graph is the same either way and `train` simply starts from scratch.
With ``--cache FOLDER`` a finished run with the same fingerprint is exported from there instead of
trained again (``stages._training``).
"""

from __future__ import annotations

from collections.abc import Sequence

from faceops.config.base import BaseParams
from faceops.config.pretrain import PretrainParams
from faceops.io.atomic import atomic_directory
from faceops.io.layout import MODEL_FILE
from stages._common import console, params_or_exit, parse_args, write_metrics
from stages._finished import cache_folder
from stages._training import open_live, run_training

#: Added to ``base.seed`` so pre-training and training draw different random streams.
SEED_OFFSET = 1_000


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["shards", "out", "ckpt", "metrics", "live"], argv, path_lists=["cache"])
    params = params_or_exit(args.params, base=BaseParams, pretrain=PretrainParams)
    cfg = params.pretrain
    if not cfg.enabled:
        from faceops.io.checkpoint import (
            save_checkpoint,  # torch: imported only where a stage computes
        )
        from faceops.train import disabled_record

        with atomic_directory(args.out) as staging:
            save_checkpoint(staging / MODEL_FILE, disabled_record(cfg.model_dump(mode="json")), kind="model")
        with open_live(args.live) as live:
            live.log_metric("enabled", 0, plot=False)
        write_metrics(args.metrics, {"enabled": 0})
        console.print("pretrain: disabled (pretrain.enabled is false); train will start from scratch")
        return
    run_training(
        "pretrain", cfg, seed=params.base.seed + SEED_OFFSET, shards=args.shards, out=args.out, ckpt=args.ckpt,
        metrics=args.metrics, live=args.live, cache=cache_folder(args.cache),
    )  # fmt: skip


if __name__ == "__main__":
    main()
