"""The ``sr`` stage's work: build (or import) FIWHN, train it on patch pairs, score it on held-out images.

:func:`run_sr` takes the ``sr`` params section and the input files; where they live, the finished-run cache,
the step log sink and the progress bar are the caller's (``stages/sr.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from faceops.models import create_model
from faceops.sr.data import load_images
from faceops.sr.degrade import resize_bicubic
from faceops.sr.inference import comparison_grid, super_resolve
from faceops.sr.record import sr_record
from faceops.sr.train import crop_to_scale, evaluate_sr, train_sr
from faceops.train.loop import summarize

if TYPE_CHECKING:
    from faceops.config.sr import SrParams

__all__ = ["SrResult", "run_sr"]


@dataclass(frozen=True)
class SrResult:
    """What the ``sr`` stage writes: the model record, its metrics and the LR / bicubic / SR / HR grid (uint8 RGB)."""

    record: dict[str, Any]
    metrics: dict[str, float | int]
    grid: np.ndarray


def run_sr(
    cfg: SrParams, *, seed: int, train_files: Sequence[Path], eval_files: Sequence[Path],
    init_record: Mapping[str, Any] | None = None, device: str = "cpu", resume_file: Path | None = None,
    log: Callable[[int, dict[str, float]], None] | None = None, progress: Callable[[int], None] | None = None,
) -> SrResult:  # fmt: skip
    """Train ``cfg.model`` (from ``init_record`` when given) on ``train_files`` and score it on ``eval_files``.

    Args:
        cfg: the ``sr`` params section.
        seed: initial weights, patch draws.
        train_files, eval_files: shard ``.tar`` files or image files (``faceops.sr.data``).
        init_record: an imported record of the same model (``sr.init: imported:...``); its width wins over
            ``cfg.channels``.
        device, resume_file, log, progress: where to train, the resumable checkpoint, step log and progress sink.

    Raises:
        ValueError: ``init_record`` is another model than ``cfg.model``, or the inputs do not fit (``load_images``,
            ``PatchPairs``).
    """
    if init_record is not None and init_record.get("model_name") != cfg.model:
        raise ValueError(f"sr.init is imported but the imported record is {init_record.get('model_name')!r}, not "
                         f"sr.model {cfg.model!r}; import the {cfg.model} weights")  # fmt: skip
    scratch = {"channels": cfg.channels, "skip_init": cfg.skip_init}
    model_args = dict(init_record["model_args"]) if init_record is not None else scratch
    torch.manual_seed(seed)
    net = create_model(cfg.model, **model_args)
    if init_record is not None:
        net.load_state_dict(init_record["state_dict"])
    net.to(device)
    section = cfg.model_dump(mode="json")
    about = {"model_name": cfg.model, "model_args": model_args, "params": section, "seed": seed}
    train_images = load_images(train_files) if cfg.steps else []
    result = train_sr(net, train_images, patch=cfg.patch, batch_size=cfg.batch_size, steps=cfg.steps, lr=cfg.lr,
                      eta_min=cfg.eta_min, seed=seed, augment=cfg.augment, device=device, log=log,
                      log_every=cfg.log_every, resume_file=resume_file, checkpoint_every=cfg.checkpoint_every,
                      about=about, progress=progress)  # fmt: skip
    held_out = load_images(eval_files)
    scores = evaluate_sr(net, held_out, batch_size=cfg.eval_batch_size, device=device)
    losses = {k: v for k, v in summarize(result.history).items() if k.startswith("loss/")}
    grid = _grid(net, held_out[: cfg.grid_images], device)
    init = "imported" if init_record is not None else "scratch"
    return SrResult(
        record=sr_record(net.cpu(), cfg.model, model_args, step=result.step, params=section, init=init),
        metrics={**scores, **losses, "steps": result.step, "train_images": len(train_images),
                 "parameters": sum(p.numel() for p in net.parameters())},
        grid=grid,
    )  # fmt: skip


def _grid(net: torch.nn.Module, images: Sequence[torch.Tensor], device: str) -> np.ndarray:
    """The comparison grid of the first held-out images of the most common size among them."""
    scale = int(net.scale)
    hr_all = [crop_to_scale(image, scale) for image in images]
    shape = max({tuple(h.shape) for h in hr_all}, key=lambda s: sum(tuple(h.shape) == s for h in hr_all))
    hr = torch.stack([h for h in hr_all if tuple(h.shape) == shape])
    lr = resize_bicubic(hr, (shape[1] // scale, shape[2] // scale))
    return comparison_grid(hr, lr, super_resolve(net, lr, device=device))
