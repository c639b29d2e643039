"""What the `pretrain` and `train` stages share: the run's file side. ``faceops.train.build_training``
assembles the run; here it resumes from its fingerprinted folder under ``ckpt``, logs every step to
dvclive and a progress bar, exports ``out/model.pt`` and writes metrics.

Run with ``python -m stages.<stage>`` (one process) or ``torchrun --nproc_per_node N -m stages.<stage>``.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import torch
from dvclive import Live

from faceops.config import PretrainParams, TrainParams
from faceops.data.loader import split_urls
from faceops.io.atomic import atomic_directory
from faceops.io.checkpoint import MODEL_FILE, RESUME_FILE, load_checkpoint, save_checkpoint
from faceops.io.layout import SHARD_INDEX
from faceops.train import build_training, close_distributed, fit, init_distributed, model_record, run_fingerprint
from faceops.train import summarize
from stages._common import console, progress_bar, write_metrics


class _FileLive(Live):
    """dvclive as a plain file logger: the pipeline (dvc.yaml) owns experiments and plots.

    Why: ``Live`` otherwise opens the DVC repo and asks git for HEAD, which raises in a workspace
    whose git repo has no commit yet (dvclive 3.49 does not catch scmrepo's "Empty git repo").
    """

    def _init_dvc(self) -> None:
        self._dvc_file = None

    def log_step(self, step: int, values: dict[str, float]) -> None:
        """Record one ``fit`` log entry (the signature of ``fit``'s ``log``) and refresh metrics.json."""
        self.step = step
        for key, value in values.items():
            self.log_metric(key, value)
        self.make_summary()


def open_live(path: Path) -> _FileLive:
    """A dvclive logger writing ``path/plots/metrics/...`` and ``path/metrics.json`` (no dvc.yaml, no exp)."""
    return _FileLive(dir=str(path), resume=False, save_dvc_exp=False, dvcyaml=None)


def run_training(
    stage: str, cfg: PretrainParams | TrainParams, *, seed: int, shards: Path, out: Path, ckpt: Path, metrics: Path,
    live: Path, init: dict | None = None, init_id: bytes = b"",
) -> None:  # fmt: skip
    """Train ``cfg.model`` on the train splits of ``cfg.sources``; rank 0 writes ``out/model.pt``, metrics, plots."""
    dist = init_distributed(os.environ)
    try:
        if dist.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        run = build_training(
            cfg.model, shard_urls={s.name: split_urls(shards / s.name, "train") for s in cfg.sources},
            shares={s.name: s.share for s in cfg.sources}, batch_size=cfg.batch_size, lr=cfg.lr,
            weight_decay=cfg.weight_decay, backbone_lr_scale=cfg.backbone_lr_scale, warmup_steps=cfg.warmup_steps,
            steps=cfg.steps, final_lr_ratio=cfg.final_lr_ratio, margin_scale=cfg.margin_scale,
            margin_cos=cfg.margin_cos, sample_rate=cfg.sample_rate, hflip=cfg.hflip, shuffle_buffer=cfg.shuffle_buffer,
            num_workers=cfg.num_workers, seed=seed, device=dist.device, init=init,
        )  # fmt: skip
        section = cfg.model_dump(mode="json")
        indexes = [(shards / s.name / SHARD_INDEX).read_bytes() for s in cfg.sources]
        resume_file = ckpt / run_fingerprint(stage, section, seed, dist.world_size, init_id, *indexes) / RESUME_FILE
        resume = load_checkpoint(resume_file, kind="resume") if resume_file.is_file() else None
        about = {"model_name": cfg.model, "model_args": {}, "params": section, "identities": run.identities,
                 "seed": seed}  # fmt: skip
        start = int(resume["step"]) if resume else 0
        with ExitStack() as stack:
            hooks, log = [], None
            if dist.is_main:
                if resume:
                    console.print(f"{stage}: resuming from step {start} ({resume_file.parent})")
                log = stack.enter_context(open_live(live)).log_step
                for step, values in resume["history"] if resume else []:
                    log(step, values)
                advance = stack.enter_context(progress_bar(stage, cfg.steps, "steps"))
                advance(start)
                hooks.append(lambda info: advance(1))
            began = time.perf_counter()
            result = fit(
                run.model, run.loss_fn, run.optimizer, run.scheduler, run.batches, steps=cfg.steps, seed=seed,
                device=dist.device, precision=cfg.precision, grad_clip=cfg.grad_clip, log=log,
                log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every, resume=resume, hooks=hooks,
                save=lambda state: save_checkpoint(resume_file, {**state, **about}, kind="resume"),
            )  # fmt: skip
            seconds = time.perf_counter() - began
        if dist.is_main:
            record = model_record(run.model, cfg.model, {}, identities=run.identities, step=result.step,
                                  params=section, init="pretrain" if init is not None else "scratch")  # fmt: skip
            with atomic_directory(out) as staging:
                save_checkpoint(staging / MODEL_FILE, record, kind="model")
            final = {k: v for k, v in summarize(result.history).items() if k.startswith("loss/")}
            write_metrics(metrics, {**final, "steps": result.step, "identities": len(run.identities)})
            shutil.rmtree(resume_file.parent, ignore_errors=True)
            rate = (result.step - start) * cfg.batch_size * dist.world_size / max(seconds, 1e-9)
            console.print(f"{stage}: {result.step} steps, loss {final.get('loss/total', float('nan')):.4f}, "
                          f"{rate:.1f} images/s -> {out / MODEL_FILE}")  # fmt: skip
    finally:
        close_distributed()
