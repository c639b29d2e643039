"""One structure training job: the corner/edge network trained jointly by the project's one loop, ``fit``.

HEAT (Chen, Qian and Furukawa, CVPR 2022, arXiv 2111.15143) trains its corner and edge models together; so
does CornerFormer (Tian et al., arXiv 2304.07072), with one network. Here the corner heatmap loss is
``fit``'s task loss and the edge loss its extra term (``faceops.structure.losses.EdgeTerm``), so one
forward pass feeds both and one AdamW step updates the whole network. Batches come from the structure
shards through ``faceops.train.mixing.MixedBatches`` (no flips: a mirrored image would need mirrored
labels); a run continues its resumable checkpoint when one exists, as the face training does.

Papers: CornerFormer: Hongbo Tian, Yulong Li, Linzhi Huang, Xu Ling, Yue Yang and Jiani Hu, "CornerFormer: Boosting
Corner Representation for Fine-Grained Structured Reconstruction", arXiv preprint 2304.07072, 2023; HEAT: Jiacheng
Chen, Yiming Qian and Yasutaka Furukawa, "HEAT: Holistic Edge Attention Transformer for Structured Reconstruction",
CVPR 2022, arXiv 2111.15143.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from faceops.io.checkpoint import load_checkpoint, save_checkpoint
from faceops.models import create_model, param_groups
from faceops.structure.losses import CornerLoss, EdgeTerm
from faceops.structure.model import CornerEdgeNet
from faceops.structure.targets import encode_structures
from faceops.train.batch import IMAGE_MEAN, IMAGE_STD
from faceops.train.loop import fit, summarize
from faceops.train.mixing import MixedBatches, batch_counts
from faceops.train.schedule import make_scheduler

if TYPE_CHECKING:
    from faceops.config.structure_train import StructureTrainParams

__all__ = ["TrainedStructure", "structure_model_args", "train_structure"]


@dataclass(frozen=True)
class TrainedStructure:
    """A finished job: the exported record (``save_checkpoint(..., kind="model")``; ``build_model`` rebuilds
    it), final loss means (``summarize``) with ``steps``, and the step it resumed from (0: fresh)."""

    record: dict[str, Any]
    metrics: dict[str, float | int]
    resumed_from: int


def structure_model_args(cfg: StructureTrainParams) -> dict[str, Any]:
    """The reconstructed choices, as ``create_model`` arguments: heatmap channels and feature sharing."""
    return {"corner_channels": cfg.corner_channels, "feature_sharing": cfg.feature_sharing}


def train_structure(
    cfg: StructureTrainParams, *, seed: int, shard_urls: Mapping[str, Sequence[Path]], device: str = "cpu",
    resume_file: Path | None = None, log: Callable[[int, dict[str, float]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> TrainedStructure:  # fmt: skip
    """Train ``cfg.model`` on ``shard_urls`` (source -> its train shards, in ``cfg.sources`` order).

    Args:
        cfg: the ``structure_train`` params section.
        seed: weights, data order, corner order and revealed labels.
        device: where to train.
        resume_file: the run's resumable checkpoint (read when present, written every ``checkpoint_every``).
        log: gets ``(step, {metric: value})`` for every logged step, the resumed ones first.
        progress: gets the number of steps done (first the resumed ones).
    """
    args = structure_model_args(cfg)
    torch.manual_seed(seed)
    model: CornerEdgeNet = create_model(cfg.model, **args)
    edges = EdgeTerm(model, threshold=cfg.detection.threshold, nms_radius=cfg.detection.nms_radius,
                     merge_px=cfg.detection.merge_px, match_px=cfg.match_px, max_corners=cfg.max_corners,
                     edge_multiplier=cfg.edge_multiplier, seed=seed)  # fmt: skip
    model.to(device), edges.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, backbone_lr_scale=1.0, weight_decay=cfg.weight_decay))
    batches = MixedBatches(
        shard_urls, batch_counts({s.name: s.share for s in cfg.sources}, cfg.batch_size), seed=seed,
        encode=functools.partial(encode_structures, channels=cfg.corner_channels, sigma=cfg.sigma,
                                 offset_deg=cfg.direction_offset_deg),
        shuffle_buffer=cfg.shuffle_buffer, num_workers=cfg.num_workers, pin_memory=torch.device(device).type == "cuda",
    )  # fmt: skip
    about = {"model_name": cfg.model, "model_args": args, "params": cfg.model_dump(mode="json"), "seed": seed}
    resume = load_checkpoint(resume_file, kind="resume") if resume_file is not None and resume_file.is_file() else None
    start = int(resume["step"]) if resume else 0
    for step, values in resume["history"] if resume and log is not None else []:
        log(step, values)
    if progress is not None:
        progress(start)
    result = fit(
        model, CornerLoss(cfg.corner_weight).to(device), optimizer,
        make_scheduler(optimizer, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps, final_ratio=cfg.final_lr_ratio),
        batches, steps=cfg.steps, seed=seed, device=device, precision=cfg.precision, grad_clip=cfg.grad_clip, log=log,
        log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every if resume_file is not None else 0,
        save=lambda state: save_checkpoint(resume_file, {**state, **about}, kind="resume"), resume=resume,
        hooks=[lambda info: progress(1)] if progress is not None else [], terms=[edges],
    )  # fmt: skip
    record = {"enabled": True, **about, "state_dict": model.state_dict(), "step": result.step,
              "image_mean": IMAGE_MEAN, "image_std": IMAGE_STD}  # fmt: skip
    losses = {k: v for k, v in summarize(result.history).items() if k.startswith("loss/")}
    return TrainedStructure(record, {**losses, "steps": result.step}, start)
