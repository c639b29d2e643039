"""Stage `train`: multi-task SwinFace (recognition + 42 analysis heads) on the train splits of the sources.

The backbone starts from the `pretrain` output when pre-training was enabled (as SwinFace does) and
learns at ``train.lr * train.backbone_lr_scale``; otherwise the whole model starts from scratch. With
``train.init: model@vN`` the whole model promoted as that version starts the run instead (fine-tuning).
With ``--cache FOLDER`` a finished run with the same fingerprint (which covers the pre-trained
weights' bytes) is exported from there instead of trained again (``stages._training``).
"""

from __future__ import annotations

from collections.abc import Sequence

from faceops.config.base import BaseParams
from faceops.config.train import TrainParams
from faceops.io.layout import MODEL_FILE
from stages._common import params_or_exit, parse_args
from stages._finished import cache_folder
from stages._training import promoted_init_file, run_training

#: Added to ``base.seed`` so training and pre-training draw different random streams.
SEED_OFFSET = 2_000


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["shards", "pretrained", "out", "ckpt", "metrics", "live"], argv, path_lists=["cache"])
    params = params_or_exit(args.params, base=BaseParams, train=TrainParams)
    cfg = params.train
    if cfg.init == "pretrain":
        init_file = args.pretrained / MODEL_FILE
    else:
        init_file = promoted_init_file(cfg.init, args.out / MODEL_FILE, args.ckpt / "init")
    run_training(
        "train", cfg, seed=params.base.seed + SEED_OFFSET, shards=args.shards, out=args.out, ckpt=args.ckpt,
        metrics=args.metrics, live=args.live, init_file=init_file, cache=cache_folder(args.cache),
    )  # fmt: skip


if __name__ == "__main__":
    main()
