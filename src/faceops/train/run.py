"""Assembling one training run: model, margin + multi-task loss, AdamW groups, schedule, batch stream.

The ``pretrain`` and ``train`` stages differ only in the model and its initialisation, so both call
:func:`build_training` with their params section spelled out as arguments. The construction order is
fixed because it fixes the random draws: the global seed is set right before the model is created
(its initial weights), and everything after draws from its own seeded generator.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from faceops.losses import MarginSoftmax, SwinFaceLoss
from faceops.models import create_model, param_groups
from faceops.train.batch import label_stats, to_targets
from faceops.train.export import init_backbone, init_head_bias
from faceops.train.mixing import MixedBatches, batch_counts
from faceops.train.schedule import make_scheduler
from faceops.train.terms import LossTerm

__all__ = ["TrainingRun", "build_training"]


@dataclass(frozen=True)
class TrainingRun:
    """Everything ``faceops.train.fit`` takes, built and placed on the training device.

    Attributes:
        model: the network, in training mode.
        loss_fn: ``SwinFaceLoss`` (its margin centres are trained at the head lr).
        optimizer: AdamW over the ``backbone`` / ``heads`` groups of ``faceops.models.param_groups``.
        scheduler: linear warm-up then cosine decay, stepped once per optimizer step.
        batches: the endless multi-source stream (``MixedBatches``).
        identities: class names of the recognition head, in class order (empty without identities).
        terms: extra loss terms (``faceops.train.terms``), their parameters in the heads' group.
    """

    model: nn.Module
    loss_fn: SwinFaceLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batches: MixedBatches
    identities: list[str]
    terms: tuple[LossTerm, ...] = ()


def build_training(
    model_name: str,
    *,
    shard_urls: Mapping[str, Sequence[str | Path]],
    shares: Mapping[str, float],
    batch_size: int,
    lr: float,
    weight_decay: float,
    backbone_lr_scale: float,
    warmup_steps: int,
    steps: int,
    final_lr_ratio: float,
    margin_scale: float,
    margin_cos: float,
    sample_rate: float,
    hflip: float,
    shuffle_buffer: int,
    num_workers: int,
    seed: int,
    device: torch.device | str = "cpu",
    init: Mapping[str, Any] | None = None,
    model_args: Mapping[str, Any] | None = None,
    make_terms: Callable[[nn.Module], Sequence[LossTerm]] | None = None,
) -> TrainingRun:
    """Build a training run over the training shards of several sources.

    Args:
        model_name, model_args: what ``create_model`` builds (e.g. ``"swinface_cpu"``, ``{}``).
        shard_urls: source name -> its training shards; the sources' slices are concatenated in this order.
        shares: source name -> its share of every batch (same names, summing to 1; ``batch_counts``).
        batch_size: samples per batch over all sources (per process under DDP).
        lr, weight_decay, backbone_lr_scale: AdamW head lr, decay, and the backbone's lr factor.
        warmup_steps, steps, final_lr_ratio: the schedule (``make_scheduler``).
        margin_scale, margin_cos, sample_rate: CosFace scale ``s``, margin ``m``, and the share of
            class centres sampled per step (Partial FC).
        hflip, shuffle_buffer, num_workers: the batch stream (``MixedBatches``).
        seed: sets the global RNG before the model is created (initial weights, dropout) and seeds the
            centre sampling, shard order and flips.
        device: where the model and loss live; batches are pinned when it is CUDA.
        init: an exported model record whose weights start the model (``init_backbone``): a pre-trained
            recognition model (the backbone) or a promoted model of the same variant (everything; its
            trained age head then keeps its bias); ``None`` starts from scratch.
        make_terms: builds the run's extra loss terms from the model (called right after the model is
            made and initialised, so their random initial weights follow the seed too); their parameters
            train with the heads.

    Raises:
        ValueError: the shards hold no identity while the model learns recognition only, or
            ``init`` does not fit the model (``init_backbone``).
    """
    device = torch.device(device)
    stats = label_stats([url for urls in shard_urls.values() for url in urls])
    identities = stats.identities
    torch.manual_seed(seed)
    model = create_model(model_name, **dict(model_args or {}))
    if not identities and not model.head_specs:
        raise ValueError(f"the training shards of {sorted(shard_urls)} hold no identity label; {model_name} learns "
                         "recognition only, so list sources with identities")  # fmt: skip
    copied = init_backbone(model, init) if init is not None else []
    age_trained = any(name.startswith("heads.Age.") or ".heads.Age." in name for name in copied)
    if stats.age_mean is not None and any(h.name == "Age" for h in model.head_specs) and not age_trained:
        init_head_bias(model, "Age", stats.age_mean)
    margin = MarginSoftmax(
        len(identities), model.num_features, s=margin_scale, m_cos=margin_cos, sample_rate=sample_rate, seed=seed,
    ) if identities else None  # fmt: skip
    loss_fn = SwinFaceLoss(margin, model.head_specs).to(device)
    terms = tuple(make_terms(model)) if make_terms is not None else ()
    model.to(device)
    for term in terms:
        term.to(device)
    groups = param_groups(model, lr, backbone_lr_scale=backbone_lr_scale, weight_decay=weight_decay,
                          extra_head_modules=[loss_fn, *terms])  # fmt: skip
    optimizer = torch.optim.AdamW(groups)
    scheduler = make_scheduler(optimizer, warmup_steps=warmup_steps, total_steps=steps, final_ratio=final_lr_ratio)
    classes = {name: i for i, name in enumerate(identities)} if identities else None
    batches = MixedBatches(
        shard_urls, batch_counts(shares, batch_size), seed=seed, shuffle_buffer=shuffle_buffer,
        num_workers=num_workers, hflip=hflip, pin_memory=device.type == "cuda",
        encode=functools.partial(to_targets, heads=model.head_specs, identity_to_class=classes),
    )  # fmt: skip
    return TrainingRun(model, loss_fn, optimizer, scheduler, batches, identities, terms)
