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

import shutil
from collections.abc import Sequence
from pathlib import Path

from faceops.config.base import BaseParams
from faceops.config.train import TrainParams
from faceops.io.atomic import atomic_directory
from faceops.io.digest import sha256_file
from faceops.io.layout import MODEL_FILE
from stages._common import params_or_exit, parse_args
from stages._training import train_stage

#: Added to ``base.seed`` so training and pre-training draw different random streams.
SEED_OFFSET = 2_000


def promoted_init_file(tag: str, model_file: Path, scratch: Path) -> Path:
    """``model_file`` as the version tagged ``tag`` recorded it, copied to ``scratch/<tag>/`` and returned.

    The tag's commit pins the model's hash in its dvc.lock, so DVC serves exactly those bytes from the
    local cache (or the default remote); nothing here trusts the working tree, which may hold a newer
    model. ``model_file`` is relative to the repository root, where DVC runs stage commands.

    Raises:
        SystemExit: the tag does not exist or DVC cannot find the model it pins (the message says which).
    """
    import dvc.api  # only a fine-tuning run needs DVC's API (slow to import)

    target = scratch / tag / MODEL_FILE
    try:
        with dvc.api.open(model_file.as_posix(), rev=tag, mode="rb") as stream, atomic_directory(target.parent) as tmp:
            with (tmp / MODEL_FILE).open("wb") as copy:
                shutil.copyfileobj(stream, copy)
    except Exception as err:  # DVC raises several types (RevError, PathMissingError, FileMissingError, ...)
        raise SystemExit(
            f"train.init {tag!r}: cannot read {model_file} at that version ({type(err).__name__}: {err}); check "
            "`git tag -l 'model@v*'`, and `dvc pull` if the model is only on a remote"
        ) from None
    return target


def imported_init_file(init: str, folder: Path) -> Path:
    """``folder/<model>.pt`` of ``init`` = ``imported:<model>@<sha256 prefix>``, once its bytes are the pinned ones.

    Raises:
        SystemExit: no such file, or it holds other bytes than the params pin (the message gives the fix).
    """
    name, pin = init.removeprefix("imported:").split("@")
    path = folder / f"{name}.pt"
    if not path.is_file():
        raise SystemExit(f"train.init {init!r}: no {path}; write it with `faceops import-weights swinface CHECKPOINT`")
    digest = sha256_file(path)
    if not digest.startswith(pin):
        raise SystemExit(f"train.init {init!r}: {path} has sha256 {digest[:12]}..., not {pin}...; to train from this "
                         f"file set train.init to imported:{name}@{digest[:12]}")  # fmt: skip
    return path


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
