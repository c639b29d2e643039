"""One training job, from a ``pretrain`` / ``train`` params section to the exported-model record.

:func:`run_training` assembles the run (:func:`faceops.train.build_training`), continues it from its
resumable checkpoint when one exists, trains with the flat ``fit`` loop (saving that checkpoint every
``checkpoint_every`` steps) and returns the record to export plus the run's final metrics. Where the files
live, the finished-run cache, the log sink and the progress bar are the caller's (the stages):
``log`` receives every logged step (also the resumed ones, replayed first) and ``progress`` the steps done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.nn as nn

from faceops.fairness import gabn_terms, shard_groups
from faceops.io.checkpoint import load_checkpoint, save_checkpoint
from faceops.train.distributed import DistInfo
from faceops.train.export import model_record
from faceops.train.loop import fit, summarize
from faceops.train.lowres import lowres_terms
from faceops.train.run import build_training
from faceops.train.terms import LossTerm

if TYPE_CHECKING:
    from faceops.config.pretrain import PretrainParams
    from faceops.config.train import TrainParams

__all__ = ["TrainedModel", "run_training"]


@dataclass(frozen=True)
class TrainedModel:
    """What a finished job gives its caller.

    Attributes:
        record: the exported-model record (``save_checkpoint(..., kind="model")``; ``model_record``).
        metrics: final means of every ``loss/*`` over the last tenth of the log (``summarize``), ``steps``
            and ``identities`` (classes of the recognition head).
        resumed_from: the step the job continued from (0 for a fresh start).
        images_per_second: training throughput of this process's part of the job, over all processes.
    """

    record: dict[str, Any]
    metrics: dict[str, float | int]
    resumed_from: int
    images_per_second: float


def run_training(
    cfg: PretrainParams | TrainParams, *, seed: int, shard_urls: Mapping[str, Sequence[Path]], resume_file: Path,
    dist: DistInfo, init_file: Path | None = None, log: Callable[[int, dict[str, float]], None] | None = None,
    progress: Callable[[int], None] | None = None, make_terms: Callable[[nn.Module], Sequence[LossTerm]] | None = None,
) -> TrainedModel:  # fmt: skip
    """Train ``cfg.model`` on ``shard_urls`` for ``cfg.steps`` steps, continuing ``resume_file`` if it exists.

    Args:
        cfg: the ``pretrain``, ``train`` or ``adapt`` params section (model, sources' shares, optimizer, schedule,
            ...; ``gabn`` where the section has it).
        seed: the run's seed (weights, data order, flips, centre sampling).
        shard_urls: source name -> its training shards, in ``cfg.sources`` order.
        resume_file: the resumable checkpoint of this run (read when present, written by rank 0).
        dist: this process's place in the job (``init_distributed``).
        init_file: an exported model whose weights start the run (none when its record says the stage that
            wrote it was disabled): the ``init`` recorded is then ``cfg.init`` (``"pretrain"`` for a
            ``pretrain`` section's caller), else ``"scratch"``.
        log: called with ``(step, {metric: value})`` for every logged step (give it on rank 0 only).
        progress: called with the number of steps done, first the resumed ones (rank 0 only).
        make_terms: the caller's extra loss terms for the model (``build_training``), e.g. AIN's target term;
            with ``cfg.gabn.enabled`` GABN's terms (``faceops.fairness.gabn_terms``) are added after them, then
            with ``cfg.lowres.enabled`` LRFR's (``faceops.train.lowres.lowres_terms``).
    """
    record = load_checkpoint(init_file, kind="model") if init_file is not None else None
    init = record if record is not None and record["enabled"] else None
    run = build_training(
        cfg.model, shard_urls=shard_urls, shares={s.name: s.share for s in cfg.sources}, batch_size=cfg.batch_size,
        lr=cfg.lr, weight_decay=cfg.weight_decay, backbone_lr_scale=cfg.backbone_lr_scale,
        warmup_steps=cfg.warmup_steps, steps=cfg.steps, final_lr_ratio=cfg.final_lr_ratio,
        margin_scale=cfg.margin_scale, margin_cos=cfg.margin_cos, sample_rate=cfg.sample_rate, hflip=cfg.hflip,
        shuffle_buffer=cfg.shuffle_buffer, num_workers=cfg.num_workers, seed=seed, device=dist.device, init=init,
        make_terms=_with_gabn(cfg, make_terms, shard_urls, seed),
    )  # fmt: skip
    section = cfg.model_dump(mode="json")
    resume = load_checkpoint(resume_file, kind="resume") if resume_file.is_file() else None
    about = {"model_name": cfg.model, "model_args": {}, "params": section, "identities": run.identities, "seed": seed}
    start = int(resume["step"]) if resume else 0
    for step, values in resume["history"] if resume and log is not None else []:
        log(step, values)
    if progress is not None:
        progress(start)
    began = time.perf_counter()
    result = fit(
        run.model, run.loss_fn, run.optimizer, run.scheduler, run.batches, steps=cfg.steps, seed=seed,
        device=dist.device, precision=cfg.precision, grad_clip=cfg.grad_clip, log=log, log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every, resume=resume,
        hooks=[lambda info: progress(1)] if progress is not None else [],
        save=lambda state: save_checkpoint(resume_file, {**state, **about}, kind="resume"), terms=run.terms,
    )  # fmt: skip
    seconds = time.perf_counter() - began
    init_name = getattr(cfg, "init", "pretrain") if init is not None else "scratch"
    final = {k: v for k, v in summarize(result.history).items() if k.startswith("loss/")}
    return TrainedModel(
        record=model_record(run.model, cfg.model, {}, identities=run.identities, step=result.step, params=section,
                            init=init_name),
        metrics={**final, "steps": result.step, "identities": len(run.identities)},
        resumed_from=start,
        images_per_second=(result.step - start) * cfg.batch_size * dist.world_size / max(seconds, 1e-9),
    )  # fmt: skip


def _with_gabn(
    cfg: Any, make_terms: Callable[[nn.Module], Sequence[LossTerm]] | None, shard_urls: Mapping[str, Sequence[Path]],
    seed: int,
) -> Callable[[nn.Module], list[LossTerm]] | None:  # fmt: skip
    """The caller's terms plus GABN's when the section switches it on (``train``/``adapt`` have ``gabn``), and
    LRFR's low-resolution term when ``cfg.lowres`` does (``faceops.train.lowres``)."""
    gabn = getattr(cfg, "gabn", None)
    if make_terms is None and (gabn is None or not gabn.enabled) and not cfg.lowres.enabled:
        return None

    def terms(model: nn.Module) -> list[LossTerm]:
        extra = list(make_terms(model)) if make_terms is not None else []
        if gabn is not None and gabn.enabled:
            groups = shard_groups(url for urls in shard_urls.values() for url in urls)
            extra += gabn_terms(gabn, model, groups, seed=seed)
        return extra + lowres_terms(cfg.lowres, seed=seed)

    return terms
