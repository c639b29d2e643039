"""Stage `sr`: FIWHN super-resolution of faces, trained on random LR/HR patches and scored against bicubic.

Reads the aligned faces of ``sr.source`` from the shards (or, ``sr.data: raw``, any image folder under
``--raw``), starts from scratch or from ``--imported/<sr.model>.pt`` (``faceops import-weights fiwhn``; ``sr.init:
imported:<model>@<sha256 prefix>`` pins its bytes), trains
``sr.steps`` steps (0: only scores) and writes ``--out/model.pt``, PSNR/SSIM-Y against bicubic on the held-out
images (``--metrics``) and an LR / bicubic / SR / HR grid (``--plots/grid.png``); ``faceops.sr.job.run_sr``.
With ``--cache FOLDER`` a finished run with the same inputs, params and code is restored instead; a killed run
continues from ``--ckpt/<fingerprint>/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faceops.config.base import BaseParams
from faceops.config.sr import SrParams
from faceops.io.atomic import atomic_directory, atomic_write_bytes
from faceops.io.digest import sha256_file
from faceops.io.layout import MODEL_FILE, RESUME_FILE
from faceops.io.shards import split_urls
from faceops.runcache import device_type, fingerprint
from stages._common import params_or_exit, parse_args, print_counts, progress_bar, write_metrics
from stages._finished import cache_folder, code_digest, reuse_or_run
from stages._imported import imported_init_file

#: Added to ``base.seed`` so the sr stage draws its own random streams.
SEED_OFFSET = 3_000
GRID_FILE = "grid.png"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["shards", "raw", "imported", "out", "ckpt", "metrics", "plots"], argv,
                      path_lists=["cache"])  # fmt: skip
    params = params_or_exit(args.params, base=BaseParams, sr=SrParams)
    cfg, device, seed = params.sr, device_type(), params.base.seed + SEED_OFFSET
    root, (train, held_out) = _inputs(args, cfg)
    init = None if cfg.init == "scratch" else imported_init_file(cfg.init, args.imported, key="sr.init",
                                                                 importer="fiwhn")  # fmt: skip
    parts = [cfg.model_dump(mode="json"), seed, [(p.relative_to(root).as_posix(), sha256_file(p)) for p in train],
             [(p.relative_to(root).as_posix(), sha256_file(p)) for p in held_out], sha256_file(init) if init else None]
    resume = args.ckpt / fingerprint("sr", parts, code=code_digest("sr"), device=device) / RESUME_FILE
    outputs = {"out": args.out, "metrics.json": args.metrics, "plots": args.plots}
    reuse_or_run("sr", cache_folder(args.cache), parts, outputs,
                 lambda: _run(args, cfg, seed, train, held_out, init, resume, device), device=device)  # fmt: skip


def _inputs(args: Any, cfg: SrParams) -> tuple[Path, tuple[list[Path], list[Path]]]:
    """The folder the inputs live in and its (train, held-out) files; torch is imported only for a raw folder."""
    if cfg.data == "raw":
        from faceops.sr.data import folder_files

        return args.raw, folder_files(args.raw / cfg.source, cfg.heldout_fraction)
    folder = args.shards / cfg.source
    return args.shards, (split_urls(folder, cfg.train_split), split_urls(folder, cfg.eval_split))


def _run(args: Any, cfg: SrParams, seed: int, train: list[Path], held_out: list[Path], init: Path | None,
         resume: Path, device: str) -> None:  # fmt: skip
    """torch and the model code are imported here, not at the top: a restore never needs them."""
    import cv2

    from faceops.io.checkpoint import load_checkpoint, save_checkpoint
    from faceops.sr.job import run_sr

    record = load_checkpoint(init, kind="model") if init is not None else None
    with progress_bar("sr", cfg.steps, "steps") as progress:
        result = run_sr(cfg, seed=seed, train_files=train, eval_files=held_out, init_record=record, device=device,
                        resume_file=resume, progress=progress)  # fmt: skip
    with atomic_directory(args.out) as staging:
        save_checkpoint(staging / MODEL_FILE, result.record, kind="model")
    with atomic_directory(args.plots) as staging:
        png = cv2.imencode(".png", cv2.cvtColor(result.grid, cv2.COLOR_RGB2BGR))[1].tobytes()
        atomic_write_bytes(staging / GRID_FILE, png)
    write_metrics(args.metrics, result.metrics)
    shutil.rmtree(resume.parent, ignore_errors=True)
    print_counts(f"sr ({cfg.model}, C={result.record['model_args']['channels']}, {result.metrics['steps']} steps)",
                 {k: round(v, 3) for k, v in result.metrics.items() if k.endswith(("psnr_y", "ssim_y"))})  # fmt: skip


if __name__ == "__main__":
    main()
