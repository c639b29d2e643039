"""What the `pretrain` and `train` stages share: build a run from its params section, resume it from
its fingerprinted checkpoint folder, log every step to dvclive, export the model, write metrics.

Run with ``python -m stages.<stage>`` (one process) or ``torchrun --nproc_per_node N -m stages.<stage>``.
"""

from __future__ import annotations

import functools
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
from faceops.losses import MarginSoftmax, SwinFaceLoss
from faceops.models import create_model, param_groups
from faceops.train import (
    MixedBatches, batch_counts, close_distributed, fit, init_backbone, init_distributed, init_head_bias,
    label_stats, make_scheduler, model_record, run_fingerprint, summarize, to_targets,
)  # fmt: skip
from stages._common import console, progress_bar, write_metrics


class _FileLive(Live):
    """dvclive as a plain file logger: the pipeline (dvc.yaml) owns experiments and plots.

    Why: ``Live`` otherwise opens the DVC repo and asks git for HEAD, which raises in a workspace
    whose git repo has no commit yet (dvclive 3.49 does not catch scmrepo's "Empty git repo").
    """

    def _init_dvc(self) -> None:
        self._dvc_file = None


def open_live(path: Path) -> Live:
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
        urls = {s.name: split_urls(shards / s.name, "train") for s in cfg.sources}
        stats = label_stats([u for source_urls in urls.values() for u in source_urls])
        identities = stats.identities
        torch.manual_seed(seed)
        model = create_model(cfg.model)
        if not identities and not model.head_specs:
            raise ValueError(f"{stage}: the train splits of {sorted(urls)} hold no identity label; "
                             f"{cfg.model} learns recognition only, so list sources with identities")  # fmt: skip
        if init is not None:
            init_backbone(model, init)
        if stats.age_mean is not None and any(h.name == "Age" for h in model.head_specs):
            init_head_bias(model, "Age", stats.age_mean)
        margin = MarginSoftmax(
            len(identities), model.num_features, s=cfg.margin_scale, m_cos=cfg.margin_cos,
            sample_rate=cfg.sample_rate, seed=seed,
        ) if identities else None  # fmt: skip
        loss_fn = SwinFaceLoss(margin, model.head_specs).to(dist.device)
        model.to(dist.device)
        groups = param_groups(model, cfg.lr, backbone_lr_scale=cfg.backbone_lr_scale, weight_decay=cfg.weight_decay,
                              extra_head_modules=[loss_fn])  # fmt: skip
        optimizer = torch.optim.AdamW(groups)
        scheduler = make_scheduler(optimizer, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps,
                                   final_ratio=cfg.final_lr_ratio)  # fmt: skip
        classes = {name: i for i, name in enumerate(identities)} if identities else None
        batches = MixedBatches(
            urls, batch_counts({s.name: s.share for s in cfg.sources}, cfg.batch_size),
            encode=functools.partial(to_targets, heads=model.head_specs, identity_to_class=classes), seed=seed,
            shuffle_buffer=cfg.shuffle_buffer, num_workers=cfg.num_workers, hflip=cfg.hflip,
            pin_memory=dist.device.type == "cuda",
        )  # fmt: skip
        section = cfg.model_dump(mode="json")
        indexes = [(shards / s.name / SHARD_INDEX).read_bytes() for s in cfg.sources]
        run_dir = ckpt / run_fingerprint(stage, section, seed, dist.world_size, init_id, *indexes)
        resume = load_checkpoint(run_dir / RESUME_FILE, kind="resume") if (run_dir / RESUME_FILE).is_file() else None
        about = {"model_name": cfg.model, "model_args": {}, "params": section, "identities": identities, "seed": seed}

        def save(state: dict) -> None:
            save_checkpoint(run_dir / RESUME_FILE, {**state, **about}, kind="resume")

        start = int(resume["step"]) if resume else 0
        with ExitStack() as stack:
            hooks, log = [], None
            if dist.is_main:
                if resume:
                    console.print(f"{stage}: resuming from step {start} ({run_dir})")
                logger = stack.enter_context(open_live(live))

                def log(step: int, values: dict[str, float]) -> None:
                    logger.step = step
                    for key, value in values.items():
                        logger.log_metric(key, value)
                    logger.make_summary()

                for step, values in resume["history"] if resume else []:
                    log(step, values)
                advance = stack.enter_context(progress_bar(stage, cfg.steps, "steps"))
                advance(start)
                hooks.append(lambda info: advance(1))
            began = time.perf_counter()
            result = fit(
                model, loss_fn, optimizer, scheduler, batches, steps=cfg.steps, seed=seed, device=dist.device,
                precision=cfg.precision, grad_clip=cfg.grad_clip, log=log, log_every=cfg.log_every, save=save,
                checkpoint_every=cfg.checkpoint_every, resume=resume, hooks=hooks,
            )  # fmt: skip
            seconds = time.perf_counter() - began
        if dist.is_main:
            record = model_record(model, cfg.model, {}, identities=identities, step=result.step, params=section,
                                  init="pretrain" if init is not None else "scratch")  # fmt: skip
            with atomic_directory(out) as staging:
                save_checkpoint(staging / MODEL_FILE, record, kind="model")
            final = {k: v for k, v in summarize(result.history).items() if k.startswith("loss/")}
            write_metrics(metrics, {**final, "steps": result.step, "identities": len(identities)})
            shutil.rmtree(run_dir, ignore_errors=True)
            rate = (result.step - start) * cfg.batch_size * dist.world_size / max(seconds, 1e-9)
            console.print(f"{stage}: {result.step} steps, loss {final.get('loss/total', float('nan')):.4f}, "
                          f"{rate:.1f} images/s -> {out / MODEL_FILE}")  # fmt: skip
    finally:
        close_distributed()
