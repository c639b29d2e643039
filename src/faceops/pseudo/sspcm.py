"""SSPCM training loop (two co-teaching teachers + a student, previous-epoch snapshot) on tensors.

Method: SSPCM (semi-supervised pose estimation with position-inconsistency pseudo-label correction;
reference code hlz0606/SSPCM, digest in ../shared/reference/papers.md section 6). Written from the
method description; no code copied.

Per step: a labelled batch (random scale/rotation, targets re-encoded at the warped points) trains
all three networks with ``supervised_loss``; an unlabelled batch goes through the two current
teachers and their previous-epoch snapshot (no grad), :func:`select_pairs` builds the ensemble
target, :func:`outlier_weights` the per-joint weights; each network then sees its own Cut-Occlude
(NET1 at NET2's pseudo-keypoints, NET2 at NET1's, NET3 at the ensemble's) and its own hard affine,
applied to its target heatmap too; ``consistency_loss`` cross-teaches NET1/NET2 and distils the
ensemble into NET3. One Adam optimiser over all three, lr x0.1 at 70 % and 90 % of the epochs.

The supervised baseline (:func:`fit_supervised`) runs the same labelled batches and schedule for one
network, so the comparison isolates the unlabelled data.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from faceops.models import create_model
from faceops.pseudo.augment import random_affine, warp, warp_points
from faceops.pseudo.cutocclude import cut_occlude
from faceops.pseudo.heatmaps import decode_heatmaps, encode_heatmaps, heatmap_to_image, image_to_heatmap
from faceops.pseudo.losses import consistency_loss, supervised_loss
from faceops.pseudo.selection import PAIR_NAMES, outlier_weights, select_pairs

__all__ = ["SSPCMConfig", "FitResult", "build_nets", "fit_sspcm", "fit_supervised", "predict_keypoints"]


@dataclass(frozen=True)
class SSPCMConfig:
    """Settings of the training loop (one ``keypoints`` params section maps onto it 1:1).

    Attributes:
        epochs: passes over the unlabelled set (the supervised baseline runs the same step count).
        batch_size: images per labelled and per unlabelled batch.
        lr, weight_decay: Adam; lr x0.1 at 70 % and 90 % of the epochs.
        sigma: target Gaussian sigma, heatmap pixels.
        warmup_epochs: epochs that use the current teacher pair only (no snapshot yet).
        score_threshold, inconsistency_filter, inconsistency_threshold, reweight: see
            :func:`faceops.pseudo.selection.outlier_weights`.
        cut_patches, cut_half_size, cut_jitter: Cut-Occlude, see :func:`faceops.pseudo.cutocclude.cut_occlude`.
        label_rotation, label_scale: labelled-data augmentation (degrees, scale sigma).
    """

    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    sigma: float = 2.0
    warmup_epochs: int = 1
    score_threshold: float = 0.1
    inconsistency_filter: bool = True
    inconsistency_threshold: float = 0.6
    reweight: bool = True
    cut_patches: int = 2
    cut_half_size: tuple[int, int] = (10, 20)
    cut_jitter: float = 10.0
    label_rotation: float = 30.0
    label_scale: float = 0.25


@dataclass
class FitResult:
    """Trained networks and per-epoch figures.

    Attributes:
        nets: the trained networks (SSPCM: [NET1, NET2, NET3]; supervised: [net]).
        history: one dict per epoch (``loss``, and for SSPCM ``loss_sup``, ``loss_cons``,
            ``kept`` = mean joint weight, ``pair/<name>`` = share of joints per chosen pair).
    """

    nets: list[nn.Module]
    history: list[dict[str, float]] = field(default_factory=list)


def build_nets(name: str, count: int, *, seed: int, **kwargs: Any) -> list[nn.Module]:
    """``count`` registered heatmap networks with seeded, different initialisations (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [create_model(name, **kwargs) for _ in range(count)]


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering ``range(n)``, cycled forever (labelled data is the small set)."""
    while True:
        order = torch.randperm(n, generator=generator)
        yield from (order[k : k + batch_size] for k in range(0, n, batch_size))


def _labelled_batch(
    images: torch.Tensor, points: torch.Tensor, visible: torch.Tensor, index: torch.Tensor,
    cfg: SSPCMConfig, stride: int, generator: torch.Generator, device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Augmented labelled images, target heatmaps at the warped points, and joint weights (0 = off-image)."""
    x = images[index]
    size = tuple(x.shape[-2:])
    theta = random_affine(
        len(index), size, generator=generator, scale_sigma=cfg.label_scale,
        rotation_sigma=cfg.label_rotation, rotation_max=2 * cfg.label_rotation,
    )  # fmt: skip
    pts = image_to_heatmap(warp_points(points[index].to(torch.float32), theta, size), stride)
    hm_size = (size[0] // stride, size[1] // stride)
    inside = (pts >= -0.5).all(-1) & (pts[..., 0] < hm_size[1] - 0.5) & (pts[..., 1] < hm_size[0] - 0.5)
    weight = visible[index].to(torch.float32) * inside
    target = encode_heatmaps(pts, hm_size, sigma=cfg.sigma, visible=weight)
    return warp(x, theta).to(device), target.to(device), weight.to(device)


def _optimiser(nets: Sequence[nn.Module], cfg: SSPCMConfig) -> tuple[torch.optim.Optimizer, Callable[[int], None]]:
    """One Adam over all networks and a per-epoch step-LR setter (x0.1 at 70 % and 90 %)."""
    params = [p for net in nets for p in net.parameters()]
    optimiser = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    milestones = (math.floor(0.7 * cfg.epochs), math.floor(0.9 * cfg.epochs))

    def set_epoch(epoch: int) -> None:
        for group in optimiser.param_groups:
            group["lr"] = cfg.lr * 0.1 ** sum(epoch >= m for m in milestones if m > 0)

    return optimiser, set_epoch


def _check_inputs(images: torch.Tensor, points: torch.Tensor, visible: torch.Tensor, stride: int) -> None:
    n, _, height, width = images.shape
    if points.shape[:1] != (n,) or visible.shape != points.shape[:2]:
        raise ValueError(f"labelled images {tuple(images.shape)}, points {tuple(points.shape)} and visible "
                         f"{tuple(visible.shape)} must agree: [N, C, H, W], [N, J, 2], [N, J]")  # fmt: skip
    if height % stride or width % stride:
        raise ValueError(f"image size {height}x{width} must be a multiple of the heatmap stride {stride}")


def fit_supervised(
    net: nn.Module, images: torch.Tensor, points: torch.Tensor, visible: torch.Tensor,
    *, steps_per_epoch: int, cfg: SSPCMConfig, seed: int,
) -> FitResult:  # fmt: skip
    """Train one network on labelled data only (the baseline teacher).

    Args:
        net: a heatmap network (``heatmap_stride`` attribute), in train mode.
        images: [L, C, H, W] float labelled images; points [L, J, 2] (x, y) image px; visible [L, J].
        steps_per_epoch: optimiser steps per epoch (match :func:`fit_sspcm`'s for a fair baseline).
        cfg: loop settings (the unlabelled ones are unused).
        seed: seeds batch order and augmentation.
    """
    stride = net.heatmap_stride
    _check_inputs(images, points, visible, stride)
    generator = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device
    optimiser, set_epoch = _optimiser([net], cfg)
    labelled = _batches(len(images), cfg.batch_size, generator)
    result = FitResult(nets=[net])
    net.train()
    for epoch in range(cfg.epochs):
        set_epoch(epoch)
        total = 0.0
        for _ in range(steps_per_epoch):
            x, target, weight = _labelled_batch(images, points, visible, next(labelled), cfg, stride, generator, device)
            loss = supervised_loss([net(x)], target, weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item()
        result.history.append({"epoch": epoch, "loss": total / steps_per_epoch})
    return result


def fit_sspcm(
    nets: Sequence[nn.Module], images: torch.Tensor, points: torch.Tensor, visible: torch.Tensor,
    unlabelled: torch.Tensor, *, cfg: SSPCMConfig, seed: int,
) -> FitResult:  # fmt: skip
    """Train NET1, NET2 (teachers) and NET3 (student) with SSPCM.

    Args:
        nets: three heatmap networks with equal ``heatmap_stride``, on one device, in train mode.
        images: [L, C, H, W] float labelled images; points [L, J, 2] (x, y) image px; visible [L, J].
        unlabelled: [U, C, H, W] float images (same size); one epoch = one pass over them.
        cfg: loop settings.
        seed: seeds batch order, augmentation and Cut-Occlude.

    Returns:
        :class:`FitResult` with the three networks and per-epoch losses, kept-joint share and pair use.
    """
    if len(nets) != 3:
        raise ValueError(f"SSPCM needs exactly 3 networks (two teachers and a student); got {len(nets)}")
    net1, net2, net3 = nets
    stride = net1.heatmap_stride
    _check_inputs(images, points, visible, stride)
    if unlabelled.shape[1:] != images.shape[1:]:
        raise ValueError(f"unlabelled images {tuple(unlabelled.shape)} must match labelled {tuple(images.shape)} per image")
    generator = torch.Generator().manual_seed(seed)
    device = next(net1.parameters()).device
    optimiser, set_epoch = _optimiser(nets, cfg)
    labelled = _batches(len(images), cfg.batch_size, generator)
    size = tuple(images.shape[-2:])
    cut = dict(n_patches=cfg.cut_patches, half_size=cfg.cut_half_size, jitter=cfg.cut_jitter, generator=generator)
    result = FitResult(nets=list(nets))
    for net in nets:
        net.train()
    for epoch in range(cfg.epochs):
        set_epoch(epoch)
        snapshot = None
        if epoch >= cfg.warmup_epochs:  # the previous-epoch teachers, frozen
            snapshot = [copy.deepcopy(net).eval().requires_grad_(False) for net in (net1, net2)]
        sums = dict.fromkeys(("loss", "loss_sup", "loss_cons", "kept", *(f"pair/{p}" for p in PAIR_NAMES)), 0.0)
        order = torch.randperm(len(unlabelled), generator=generator)
        batches = [order[k : k + cfg.batch_size] for k in range(0, len(order), cfg.batch_size)]
        for index in batches:
            # --- supervised branch: all three networks on labelled data
            x, target, weight = _labelled_batch(images, points, visible, next(labelled), cfg, stride, generator, device)
            loss_sup = supervised_loss([net(x) for net in nets], target, weight)
            # --- teachers (no grad): current pair, previous-epoch pair, selection and outlier weights
            xu = unlabelled[index].to(device)
            with torch.no_grad():
                h1, h2 = net1(xu), net2(xu)
                previous = None if snapshot is None else (snapshot[0](xu), snapshot[1](xu))
                chosen = select_pairs((h1, h2), previous)
                w = outlier_weights(
                    h1, h2, score_threshold=cfg.score_threshold, inconsistency_filter=cfg.inconsistency_filter,
                    inconsistency_threshold=cfg.inconsistency_threshold, reweight=cfg.reweight,
                )  # fmt: skip
            # --- students: own Cut-Occlude (at the other teacher's / ensemble's keypoints) + own hard affine
            students, targets = [], []
            for net, occlude_at, teach in ((net1, h2, h2), (net2, h1, h1), (net3, chosen.target, chosen.target)):
                keypoints = heatmap_to_image(decode_heatmaps(occlude_at)[0], stride)
                occluded = cut_occlude(xu.cpu(), keypoints, **cut).images
                theta = random_affine(len(index), size, generator=generator)
                students.append(net(warp(occluded, theta).to(device)))
                targets.append(warp(teach, theta))
            loss_cons = consistency_loss(tuple(students), tuple(targets), w)
            loss = loss_sup + loss_cons
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            # --- bookkeeping
            sums["loss"] += loss.item()
            sums["loss_sup"] += loss_sup.item()
            sums["loss_cons"] += loss_cons.item()
            sums["kept"] += float(w.mean())
            for k, name in enumerate(PAIR_NAMES):
                sums[f"pair/{name}"] += float((chosen.pair == k).to(torch.float32).mean())
        result.history.append({"epoch": epoch, **{k: v / len(batches) for k, v in sums.items()}})
    return result


@torch.no_grad()
def predict_keypoints(
    nets: Sequence[nn.Module], images: torch.Tensor, *, batch_size: int = 64, refine: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints from the average heatmap of ``nets`` (eval mode; training flags restored after).

    Args:
        nets: one or more heatmap networks with equal ``heatmap_stride``.
        images: [N, C, H, W] float.
        batch_size: images per forward.
        refine: quarter-pixel refinement of the argmax (see :func:`decode_heatmaps`).

    Returns:
        points [N, J, 2] (x, y) image pixels (CPU float32) and scores [N, J] (peak heights).
    """
    modes = [net.training for net in nets]
    device = next(nets[0].parameters()).device
    points, scores = [], []
    try:
        for net in nets:
            net.eval()
        for k in range(0, len(images), batch_size):
            x = images[k : k + batch_size].to(device)
            heatmaps = sum(net(x) for net in nets) / len(nets)
            coords, peak = decode_heatmaps(heatmaps.cpu(), refine=refine)
            points.append(heatmap_to_image(coords, nets[0].heatmap_stride))
            scores.append(peak)
    finally:
        for net, mode in zip(nets, modes, strict=True):
            net.train(mode)
    return torch.cat(points), torch.cat(scores)
