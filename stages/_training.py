"""What the `pretrain` and `train` stages share: the run's file side. ``faceops.train.build_training``
assembles the run; here it resumes from its fingerprinted folder under ``ckpt``, logs every step to
dvclive and a progress bar, exports ``out/model.pt`` and writes metrics.

Finished runs (``--cache``): DVC re-runs a training stage whenever any of its dependencies changes,
and ``data/shards`` changes as a whole when any source gets a photo, even a source this stage does
not read or a split it does not train on. So a finished run's exported files are kept under
``cache/<fingerprint>/``, and a stage whose fingerprint is already there copies them back
byte for byte instead of training again. The fingerprint covers everything that decides the result:
the params section, the seed, the world size, the device type and torch version, the init weights,
the bytes of every train shard the run reads (names and content, not only ``index.json``) and the
source of the code that trains (the files this stage's dvc.yaml deps list: ``stages._finished.code_digest``).
The most recently used ``stages._finished.KEEP_FINISHED`` runs are kept per stage; to train a run again anyway
(``faceops run --force`` re-runs the stage, which then finds its finished run), delete its folder.

Run with ``python -m stages.<stage>`` (one process) or ``torchrun --nproc_per_node N -m stages.<stage>``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from faceops.config.pretrain import PretrainParams
from faceops.config.train import TrainParams
from faceops.io.atomic import atomic_directory
from faceops.io.digest import run_fingerprint
from faceops.io.layout import MODEL_FILE, RESUME_FILE
from faceops.io.shards import split_urls
from stages._common import console, progress_bar, write_metrics
from stages._finished import (
    code_digest,
    device_type,
    is_finished,
    prune_finished,
    restore_finished,
    shard_digests,
    store_finished,
    torch_version,
)

if TYPE_CHECKING:
    from faceops.train import DistInfo

def open_live(path: Path):
    """A dvclive logger writing ``path/plots/metrics/...`` and ``path/metrics.json`` (no dvc.yaml, no exp).

    dvclive is imported here, not at the top: it costs ~0.3 s, which a restored run never needs.
    """
    from dvclive import Live

    class FileLive(Live):
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

    return FileLive(dir=str(path), resume=False, save_dvc_exp=False, dvcyaml=None)


def training_fingerprint(
    stage: str, cfg: PretrainParams | TrainParams, *, seed: int, world_size: int, device: str,
    shards: Path, init_id: bytes,
) -> str:  # fmt: skip
    """The fingerprint of a run (resume folder and finished-run cache key); ``device`` is its type
    (``"cpu"``, ``"cuda"``); see the module docstring."""
    data = {s.name: shard_digests(split_urls(shards / s.name, "train")) for s in cfg.sources}
    return run_fingerprint(stage, cfg.model_dump(mode="json"), seed, world_size, device, torch_version(),
                           code_digest(stage), data, init_id)  # fmt: skip


def _single_process(env: Mapping[str, str]) -> bool:
    """Whether this is a plain run rather than one rank of a torchrun job (which checks its variables)."""
    return env.get("WORLD_SIZE", "1").strip() == "1"


def _restore(stage: str, entry: Path, outputs: dict[str, Path]) -> None:
    restore_finished(entry, outputs)
    console.print(f"{stage}: same inputs as the finished run {entry.name}: exported it from {entry}")


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


def run_training(
    stage: str, cfg: PretrainParams | TrainParams, *, seed: int, shards: Path, out: Path, ckpt: Path, metrics: Path,
    live: Path, init_file: Path | None = None, cache: Path | None = None,
) -> None:  # fmt: skip
    """Train ``cfg.model`` on the train splits of ``cfg.sources``; rank 0 writes ``out/model.pt``, metrics, plots.

    ``init_file`` is an exported pre-trained model whose weights start the backbone (none when its
    record says the stage was disabled); its bytes are part of the fingerprint. With ``cache``, a run
    whose fingerprint finished before is exported from there instead of trained, and a run trained
    here is kept there (see the module docstring). A plain run restores a finished one before it
    imports torch or the training code (``stages._finished``: restores must be cheap).
    """
    outputs = {"out": out, "metrics.json": metrics, "live": live}
    about_run = {"stage": stage, "cfg": cfg, "seed": seed, "shards": shards,
                 "init_id": init_file.read_bytes() if init_file is not None else b""}  # fmt: skip
    if cache is not None and _single_process(os.environ):
        entry = cache / training_fingerprint(**about_run, world_size=1, device=device_type())
        if is_finished(entry, outputs):
            _restore(stage, entry, outputs)
            return
    import torch

    from faceops.train import close_distributed, init_distributed

    dist = init_distributed(os.environ)
    try:
        if dist.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        fingerprint = training_fingerprint(**about_run, world_size=dist.world_size, device=dist.device.type)
        entry = cache / fingerprint if cache is not None else None
        if entry is not None and is_finished(entry, outputs):
            if dist.is_main:
                _restore(stage, entry, outputs)
            return
        _train(stage, cfg, seed=seed, shards=shards, out=out, resume_file=ckpt / fingerprint / RESUME_FILE,
               metrics=metrics, live=live, init_file=init_file, dist=dist)  # fmt: skip
        if entry is not None and dist.is_main:
            store_finished(entry, outputs)
            prune_finished(entry.parent)
    finally:
        close_distributed()


def _train(
    stage: str, cfg: PretrainParams | TrainParams, *, seed: int, shards: Path, out: Path, resume_file: Path,
    metrics: Path, live: Path, init_file: Path | None, dist: DistInfo,
) -> None:  # fmt: skip
    """One training run, resumed from ``resume_file`` when it exists; rank 0 exports and writes metrics."""
    from faceops.io.checkpoint import load_checkpoint, save_checkpoint
    from faceops.train import build_training, fit, model_record, summarize

    record = load_checkpoint(init_file, kind="model") if init_file is not None else None
    init = record if record is not None and record["enabled"] else None
    init_name = getattr(cfg, "init", "pretrain") if init is not None else "scratch"
    run = build_training(
        cfg.model, shard_urls={s.name: split_urls(shards / s.name, "train") for s in cfg.sources},
        shares={s.name: s.share for s in cfg.sources}, batch_size=cfg.batch_size, lr=cfg.lr,
        weight_decay=cfg.weight_decay, backbone_lr_scale=cfg.backbone_lr_scale, warmup_steps=cfg.warmup_steps,
        steps=cfg.steps, final_lr_ratio=cfg.final_lr_ratio, margin_scale=cfg.margin_scale,
        margin_cos=cfg.margin_cos, sample_rate=cfg.sample_rate, hflip=cfg.hflip, shuffle_buffer=cfg.shuffle_buffer,
        num_workers=cfg.num_workers, seed=seed, device=dist.device, init=init,
    )  # fmt: skip
    section = cfg.model_dump(mode="json")
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
                              params=section, init=init_name)  # fmt: skip
        with atomic_directory(out) as staging:
            save_checkpoint(staging / MODEL_FILE, record, kind="model")
        final = {k: v for k, v in summarize(result.history).items() if k.startswith("loss/")}
        write_metrics(metrics, {**final, "steps": result.step, "identities": len(run.identities)})
        shutil.rmtree(resume_file.parent, ignore_errors=True)
        rate = (result.step - start) * cfg.batch_size * dist.world_size / max(seconds, 1e-9)
        console.print(f"{stage}: {result.step} steps, loss {final.get('loss/total', float('nan')):.4f}, "
                      f"{rate:.1f} images/s -> {out / MODEL_FILE}")  # fmt: skip
