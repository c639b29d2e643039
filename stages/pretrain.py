"""Stage `pretrain`: recognition-only SwinFace (CosFace) on the train splits; `pretrain.enabled: false` skips it.

Skipping still writes the stage's outputs (a model file that says ``enabled: False``, metrics, a step log
holding only ``enabled: 0``), so the DVC graph is the same either way and `train` simply starts from
scratch. With ``--cache FOLDER`` a finished run with the same fingerprint is exported from there instead
of trained again (``stages._training``).
"""

from __future__ import annotations

from collections.abc import Sequence

from faceops.config.base import BaseParams
from faceops.config.pretrain import PretrainParams
from faceops.io.atomic import atomic_directory
from faceops.io.layout import MODEL_FILE
from faceops.io.steplog import StepLog
from stages._common import console, params_or_exit, parse_args, write_metrics
from stages._training import train_stage

#: Added to ``base.seed`` so pre-training and training draw different random streams.
SEED_OFFSET = 1_000


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["shards", "out", "ckpt", "metrics", "live"], argv, path_lists=["cache"])
    params = params_or_exit(args.params, base=BaseParams, pretrain=PretrainParams)
    cfg = params.pretrain
    if cfg.enabled:
        train_stage("pretrain", cfg, seed=params.base.seed + SEED_OFFSET, args=args)
        return
    from faceops.io.checkpoint import save_checkpoint  # torch: imported only where a stage computes
    from faceops.train import disabled_record

    with atomic_directory(args.out) as staging:
        save_checkpoint(staging / MODEL_FILE, disabled_record(cfg.model_dump(mode="json")), kind="model")
    StepLog(args.live).log_summary({"enabled": 0})
    write_metrics(args.metrics, {"enabled": 0})
    console.print("pretrain: disabled (pretrain.enabled is false); train will start from scratch")


if __name__ == "__main__":
    main()
