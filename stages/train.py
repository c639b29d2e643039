"""Stage `train`: multi-task SwinFace (recognition + 42 analysis heads) on the train splits of the sources.

The backbone starts from the `pretrain` output when pre-training was enabled (as SwinFace does) and
learns at ``train.lr * train.backbone_lr_scale``; otherwise the whole model starts from scratch. With
``train.init: model@vN`` the whole model promoted as that version starts the run instead (fine-tuning); with
``train.init: imported:<model>@<sha256 prefix>`` the official weights that ``faceops import-weights`` wrote
to ``--imported``/<model>.pt do (checked against the pinned prefix).
With ``--cache FOLDER`` a finished run with the same fingerprint (which covers the pre-trained
weights' bytes) is exported from there instead of trained again (``stages._training``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from faceops.config.base import BaseParams
from faceops.config.train import TrainParams
from faceops.io.layout import MODEL_FILE
from stages._common import params_or_exit, parse_args
from stages._imported import imported_init_file
from stages._training import train_stage
from stages._versions import file_at_version

#: Added to ``base.seed`` so training and pre-training draw different random streams.
SEED_OFFSET = 2_000


def promoted_init_file(tag: str, model_file: Path, scratch: Path) -> Path:
    """``model_file`` as the version tagged ``tag`` recorded it, copied under ``scratch`` (``stages._versions``)."""
    return file_at_version(model_file, tag, scratch, param="train.init")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["shards", "pretrained", "imported", "out", "ckpt", "metrics", "live"], argv,
                      path_lists=["cache"])  # fmt: skip
    params = params_or_exit(args.params, base=BaseParams, train=TrainParams)
    cfg = params.train
    if cfg.init == "pretrain":
        init_file = args.pretrained / MODEL_FILE
    elif cfg.init.startswith("imported:"):
        init_file = imported_init_file(cfg.init, args.imported)
    else:
        init_file = promoted_init_file(cfg.init, args.out / MODEL_FILE, args.ckpt / "init")
    train_stage("train", cfg, seed=params.base.seed + SEED_OFFSET, args=args, init_file=init_file)


if __name__ == "__main__":
    main()
