"""The training loop: one flat ``fit`` to read top to bottom (style guide C14; nanoGPT, arcface_torch).

``fit`` owns only the loop: forward under autocast, backward, grad-norm clipping of the backbone,
optimizer and per-step scheduler steps, logging through a passed-in ``log(step, metrics)`` callable
(no logging library is imported here), resumable checkpoints through a passed-in ``save(record)``.

Exact resume: a checkpoint holds the model, margin centres, optimizer, scheduler, grad scaler, every
RNG the step draws from (torch CPU/CUDA and generators held by loss modules, e.g. Partial FC's) and
the data stream's position. On CPU, fp32, a run resumed from step k ends with the same weights as an
uninterrupted run with the same seed.

Distributed: with an initialised process group the model and loss are wrapped together in DDP (the
margin centres are parameters too, so their gradients are averaged as well). Every rank keeps the same
RNG streams (all ranks start from the same seed and draw the same amounts), so rank 0's checkpoint
resumes every rank. Logged values are averaged over ranks; only rank 0 logs and saves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from faceops.train.batch import normalize_images
from faceops.train.distributed import mean_across_ranks, world_info
from faceops.train.mixing import Batch
from faceops.train.terms import LossTerm, TermInputs

__all__ = ["StepInfo", "FitResult", "BatchStream", "fit", "summarize"]

Precision = Literal["fp32", "bf16", "fp16"]


class BatchStream(Protocol):
    """An endless, resumable iterator of batches (``faceops.train.mixing.MixedBatches``)."""

    def __next__(self) -> Batch: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class StepInfo:
    """What a hook sees after each step: completed step count (1-based), local loss, sample ids."""

    step: int
    loss: float
    keys: list[str]


@dataclass(frozen=True)
class FitResult:
    """Steps completed and every logged ``[step, {metric: value}]`` entry (including resumed ones)."""

    step: int
    history: list[list[Any]] = field(default_factory=list)


class _Objective(nn.Module):
    """Model + loss + extra terms as one module, so DDP averages all their gradients (margin centres included).

    One forward over the batch and the rows the terms add (``faceops.train.terms``): the task loss sees
    the batch's own rows, each term the whole forward batch.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, terms: Sequence[LossTerm] = ()):
        super().__init__()
        self.model, self.loss_fn, self.terms = model, loss_fn, nn.ModuleList(terms)

    def forward(self, images, targets, masks, progress: float, batch=None):
        n = images.shape[0]
        added = [term.extra_rows(images, batch) for term in self.terms]
        rows, offset = [], n
        for extra in added:
            count = 0 if extra is None else extra.shape[0]
            rows.append(slice(offset, offset + count))
            offset += count
        forward = torch.cat([images, *(a for a in added if a is not None)]) if offset > n else images
        outputs = self.model(forward)
        task_outputs = {k: v[:n] for k, v in outputs.items()} if offset > n else outputs

        def task_loss(outs, tgts, msks):
            return self.loss_fn(outs, tgts, msks, progress=progress)

        total, parts = task_loss(task_outputs, targets, masks)
        for term, term_rows in zip(self.terms, rows, strict=True):
            value = term(TermInputs(forward, outputs, n, term_rows, targets, masks, batch, progress, task_loss))
            total = total + term.factor(progress) * value
            parts = {**parts, term.name: value}
        return total, parts


def _module_generators(module: nn.Module) -> dict[str, torch.Generator]:
    """``torch.Generator`` objects held as attributes by ``module`` or its children, by dotted name."""
    return {
        f"{name}.{attr}".lstrip("."): value
        for name, child in module.named_modules()
        for attr, value in vars(child).items()
        if isinstance(value, torch.Generator)
    }


def _rng_state(generators: Mapping[str, torch.Generator], device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    state["generators"] = {name: g.get_state() for name, g in generators.items()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: Mapping[str, Any], generators: Mapping[str, torch.Generator], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    for name, generator in generators.items():
        generator.set_state(state["generators"][name].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def fit(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batches: BatchStream,
    *,
    steps: int,
    seed: int,
    device: torch.device | str = "cpu",
    precision: Precision = "fp32",
    grad_clip: float = 0.0,
    log: Callable[[int, dict[str, float]], None] | None = None,
    log_every: int = 1,
    save: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every: int = 0,
    resume: Mapping[str, Any] | None = None,
    hooks: Sequence[Callable[[StepInfo], None]] = (),
    terms: Sequence[LossTerm] = (),
) -> FitResult:
    """Train ``model`` with ``loss_fn`` for ``steps`` optimizer steps (continuing ``resume`` if given).

    Args:
        model: a SwinFace-style model (dict outputs; ``backbone_parameters()`` when clipping), on ``device``.
        loss_fn: ``SwinFaceLoss``-style module ``(outputs, targets, masks, *, progress) -> (total, parts)``,
            on ``device``; its parameters (margin centres) must be in ``optimizer``.
        optimizer: e.g. AdamW over ``faceops.models.param_groups`` (groups named ``backbone`` / ``heads``).
        scheduler: stepped once per optimizer step (``faceops.train.schedule.make_scheduler``).
        batches: endless resumable stream of uint8 batches with targets and masks.
        steps: total optimizer steps T; the age loss anneals with progress t / T.
        seed: seeds the torch RNG (dropout, drop-path) at the start of a fresh run.
        device: where to train.
        precision: autocast dtype on CUDA (``"fp16"`` adds a GradScaler); CPU always trains in fp32.
        grad_clip: max grad norm of the backbone parameters (0 = no clipping).
        log: called on rank 0 every ``log_every`` steps with interval means averaged over ranks:
            ``loss/total``, ``loss/<output>``, ``lr/<group>``, ``grad_norm/backbone``.
        log_every: logging interval in steps.
        save: called on rank 0 every ``checkpoint_every`` steps with the resumable state; it must
            serialise at once (tensors are live views of the weights): add the run's description and
            write it with ``faceops.io.checkpoint.save_checkpoint``.
        checkpoint_every: checkpoint interval in steps (0 = never).
        resume: a state produced by ``save`` (loaded with ``load_checkpoint``) to continue from.
        hooks: called on every rank after each step (and after its checkpoint) with :class:`StepInfo`.
        terms: extra objectives added to the task loss (``faceops.train.terms.LossTerm``), each logged as
            ``loss/<name>``; their parameters must be in ``optimizer`` (``build_training(terms=...)``).

    Returns:
        :class:`FitResult` with the final step and the whole logged history.
    """
    # ---- setup ----------------------------------------------------------------------------------
    device = torch.device(device)
    rank, world_size = world_info()
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if device.type == "cuda" else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    names = [term.name for term in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"loss terms need unique names, got {names}")
    objective: nn.Module = _Objective(model, loss_fn, terms)
    extra_terms = objective.terms
    generators = {**_module_generators(loss_fn), **{f"terms.{k}": g for k, g in _module_generators(extra_terms).items()}}
    clip_params = list(model.backbone_parameters()) if grad_clip > 0 else []
    start, history, window = 0, [], {"sums": {}, "count": 0}
    if resume is None:
        torch.manual_seed(seed)
    else:
        model.load_state_dict(resume["model"])
        loss_fn.load_state_dict(resume["loss"])
        extra_terms.load_state_dict(resume.get("terms", {}))
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        batches.load_state_dict(resume["data"])
        _restore_rng(resume["rng"], generators, device)
        start, history = int(resume["step"]), [list(entry) for entry in resume["history"]]
        window = {"sums": dict(resume["log_window"]["sums"]), "count": int(resume["log_window"]["count"])}
    if world_size > 1:
        objective = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)
    objective.train()

    for step in range(start, steps):
        batch = next(batches)
        images = normalize_images(batch.images.to(device, non_blocking=True))
        targets = {k: v.to(device, non_blocking=True) for k, v in batch.targets.items()}
        masks = {k: v.to(device, non_blocking=True) for k, v in batch.masks.items()}
        lrs = {f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(optimizer.param_groups)}

        # ---- forward --------------------------------------------------------------------------
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            total, parts = objective(images, targets, masks, progress=step / steps, batch=batch)

        # ---- backward, clipping (backbone only, as SwinFace), step -----------------------------
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        metrics = {"loss/total": total.detach(), **{f"loss/{k}": v.detach() for k, v in parts.items()}}
        if clip_params:
            scaler.unscale_(optimizer)
            metrics["grad_norm/backbone"] = torch.nn.utils.clip_grad_norm_(clip_params, grad_clip).detach()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()

        # ---- logging: interval means, averaged over ranks ---------------------------------------
        values = torch.stack([v.float() for v in metrics.values()]).tolist()  # one device sync per step
        for key, value in {**dict(zip(metrics, values)), **lrs}.items():
            window["sums"][key] = window["sums"].get(key, 0.0) + value
        window["count"] += 1
        if (step + 1) % log_every == 0 or step + 1 == steps:
            names = sorted(window["sums"])
            means = [window["sums"][k] / window["count"] for k in names]
            means = mean_across_ranks(torch.tensor(means, dtype=torch.float64, device=device))  # NCCL: on device
            entry = dict(zip(names, means.tolist()))
            history.append([step + 1, entry])
            if log is not None and rank == 0:
                log(step + 1, entry)
            window = {"sums": {}, "count": 0}

        # ---- checkpoint -------------------------------------------------------------------------
        if save is not None and rank == 0 and checkpoint_every and (step + 1) % checkpoint_every == 0:
            save({
                "step": step + 1,
                "model": model.state_dict(),
                "loss": loss_fn.state_dict(),
                "terms": extra_terms.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "data": batches.state_dict(),
                "rng": _rng_state(generators, device),
                "history": list(history),
                "log_window": {"sums": dict(window["sums"]), "count": window["count"]},
            })  # fmt: skip
        for hook in hooks:
            hook(StepInfo(step + 1, float(total.detach()), list(batch.keys)))

    return FitResult(step=max(start, steps), history=history)


def summarize(history: Sequence[Sequence[Any]], fraction: float = 0.1) -> dict[str, float]:
    """Final metrics: mean of each logged metric over the last ``fraction`` of the history entries.

    Also reports ``loss/total_start`` (the same window at the start), so one file shows whether the
    loss went down. Empty history gives an empty dict.
    """
    if not history:
        return {}
    window = max(1, round(len(history) * fraction))
    tail, head = [e[1] for e in history[-window:]], [e[1] for e in history[:window]]
    out = {key: sum(e[key] for e in tail) / len(tail) for key in tail[-1]}
    out["loss/total_start"] = sum(e["loss/total"] for e in head) / len(head)
    return out
