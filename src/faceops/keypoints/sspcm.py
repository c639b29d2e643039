"""SSPCM training loop (two co-teaching teachers + a student, previous-epoch snapshot) on tensors.

Paper: Huang, Li, Tian, Yang, Li, Deng and Ye, "Semi-Supervised 2D Human Pose Estimation Driven by Position
Inconsistency Pseudo Label Correction Module", CVPR 2023 (arXiv 2303.04346); official code
github.com/hlz0606/SSPCM. Only the paper's abstract was available to us, so the loop follows the method as
the authors' released code implements it (read at commit c292503: three networks, previous-epoch snapshot,
pair selection, score threshold, Cut-Occlude, hard affine, losses, schedule), written anew from a
description of it; no code copied. Our reconstruction, not the authors': the two deviations below;
``warmup_epochs`` that use the current teacher pair only (the released code builds no ensemble target in its
first epoch); position-inconsistency removal switched on (:mod:`faceops.keypoints.selection`) and the paste
axes of Cut-Occlude (:mod:`faceops.keypoints.cutocclude`); and the use on facial landmarks and COCO body joints
with small networks (the paper: human body pose with ResNet/HRNet backbones).

Per step: a labelled batch (random scale/rotation, targets re-encoded at the warped points) trains
all three networks with ``supervised_loss``; an unlabelled batch (the weak view: the image as given)
goes through the two current teachers and their previous-epoch snapshot (no grad);
:func:`select_pairs` builds the ensemble target and :func:`outlier_weights` the per-joint weights.
Each network then sees its own hard view of the batch (Cut-Occlude: NET1 at NET2's pseudo-keypoints,
NET2 at NET1's, NET3 at the ensemble's; then its own random affine) and ``consistency_loss``
cross-teaches NET1/NET2 and distils the ensemble into NET3. One Adam over all three, lr x0.1 at 70 %
and 90 % of the epochs.

Deviations from the released code, both measured with ``bench/keypoints.py``'s data (64x64 faces,
30 labelled, 270 unlabelled; diagnostic sweeps on a GPU, student NME):

* ``target="gaussian"`` (default): a pseudo-label is the teacher's decoded keypoint, moved by the
  hard affine with :func:`warp_points` and re-drawn as a peak-1 Gaussian (the form of the labelled
  targets). The released code regresses the student onto the teacher's *warped soft heatmap*
  (``target="heatmap"``). With small networks that target feeds back on itself: each network learns
  its peer's lower, blurrier peak (bilinear warping blurs it further), teacher peaks sink towards the
  0.1 score threshold (on one seed the kept joints fell from 95 % to 31-43 % in the last third of
  100 epochs), and the networks fit even the labelled images worse. Soft targets: NME 0.101 / 0.090 (two seeds) against 0.077 / 0.080
  supervised; Gaussian targets: 0.060 / 0.062.
* ``rampup``: the consistency weight follows the usual semi-supervised ramp-up
  ``exp(-5 (1 - t)^2)`` over the first ``rampup`` of the steps (Laine & Aila 2017; the released
  code starts at full weight). Untrained teachers' peaks already pass the 0.1 threshold, and sharp
  pseudo-labels at full weight can lock all three networks onto wrong positions: a 40-epoch run with
  a short linear ramp stalled at NME 0.26 (supervised 0.10); with this ramp it reached 0.075.

The supervised baseline (:func:`fit_supervised`) runs the same labelled batches, augmentation,
schedule and step count for one network, so the comparison isolates the unlabelled data.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn as nn

from faceops.keypoints.augment import random_affine, warp, warp_points
from faceops.keypoints.cutocclude import cut_occlude
from faceops.keypoints.heatmaps import decode_heatmaps, encode_heatmaps, heatmap_to_image, image_to_heatmap
from faceops.keypoints.losses import consistency_loss, supervised_loss
from faceops.keypoints.selection import PAIR_NAMES, outlier_weights, select_pairs
from faceops.models import create_model

__all__ = [
    "SSPCMConfig", "FitResult", "EpochHook", "build_nets", "fit_sspcm", "fit_supervised", "predict_points",
    "pseudo_targets", "rampup_weight", "steps_per_epoch",
]  # fmt: skip


#: Called after every epoch with that epoch's history row.
EpochHook = Callable[[dict[str, float]], None]


@dataclass(frozen=True)
class SSPCMConfig:
    """Settings of the training loop (one ``keypoints`` params section maps onto it 1:1).

    Defaults of the released code (its COCO configs) unless marked: Adam 1e-3 / wd 1e-4, batch 32, sigma 2,
    score threshold 0.1, inconsistency threshold 0.6 with re-weighting (the abstract's outlier removal;
    every released config switches it off, on here), 2 Cut-Occlude patches, hard affine scale N(1, 0.25) in
    [0.75, 1.25] and rotation N(0, 30) within +-60 degrees with probability 0.8, labelled augmentation
    rotation 30 / scale 0.25.

    Attributes:
        method: ``"sspcm"`` (three networks, unlabelled data) or ``"supervised"`` (one network,
            labelled data only, same step count: the baseline).
        model: registered heatmap network (``faceops.models``), e.g. ``"sspcm_tiny"``.
        input_size: (height, width) the networks see; images must be this size.
        epochs: passes over the unlabelled set (the supervised baseline runs the same step count);
            the paper's 100. ``bench/keypoints.py`` runs 50 to stay within 15 CPU minutes.
        batch_size: images per labelled and per unlabelled batch.
        lr, weight_decay: Adam; lr x0.1 at 70 % and 90 % of the epochs.
        sigma: target Gaussian sigma, heatmap pixels.
        warmup_epochs: epochs that use the current teacher pair only (no snapshot yet).
        score_threshold, inconsistency_filter, inconsistency_threshold, reweight: see
            :func:`faceops.keypoints.selection.outlier_weights`. The filter is on by default (the
            paper's abstract; the released configs switch it off).
        target: pseudo-label form, ``"gaussian"`` (default, deviation) or ``"heatmap"`` (released code).
        consistency_weight: weight of the consistency loss against the supervised one (paper 1).
        rampup: fraction of all steps over which the consistency weight ramps up from 0 (see
            :func:`rampup_weight`; deviation, paper 0).
        hard_scale, hard_rotation, hard_prob: the students' random affine (scale sigma, rotation
            sigma in degrees, clipped at twice that, probability of being applied).
        cut_patches, cut_half_size, cut_jitter: Cut-Occlude (see :func:`faceops.keypoints.cutocclude.cut_occlude`)
            with the half-size range and jitter as fractions of the shorter input side, so the paper's
            10..20 px and 10 px at 256x192 keep their proportion at any input size (3..7 px at 64x64).
        label_rotation, label_scale: labelled-data augmentation (degrees, scale sigma).
        predict_with: networks whose averaged heatmaps give the predictions: ``"student"`` (NET3,
            default), ``"teachers"`` (NET1 + NET2) or ``"all"``.
    """

    method: Literal["sspcm", "supervised"] = "sspcm"
    model: str = "sspcm_tiny"
    input_size: tuple[int, int] = (64, 64)
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    sigma: float = 2.0
    warmup_epochs: int = 1
    score_threshold: float = 0.1
    inconsistency_filter: bool = True
    inconsistency_threshold: float = 0.6
    reweight: bool = True
    target: Literal["gaussian", "heatmap"] = "gaussian"
    consistency_weight: float = 1.0
    rampup: float = 0.3
    hard_scale: float = 0.25
    hard_rotation: float = 30.0
    hard_prob: float = 0.8
    cut_patches: int = 2
    cut_half_size: tuple[float, float] = (10 / 192, 20 / 192)
    cut_jitter: float = 10 / 192
    label_rotation: float = 30.0
    label_scale: float = 0.25
    predict_with: Literal["student", "teachers", "all"] = "student"

    def __post_init__(self) -> None:
        choices = {"method": ("sspcm", "supervised"), "target": ("gaussian", "heatmap"),
                   "predict_with": ("student", "teachers", "all")}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs={self.epochs} and batch_size={self.batch_size} must be >= 1")
        if not 0.0 <= self.rampup <= 1.0:
            raise ValueError(f"rampup={self.rampup} must be a fraction of the steps in [0, 1]")


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


def steps_per_epoch(n_unlabelled: int, batch_size: int) -> int:
    """Optimiser steps in one epoch: one per unlabelled batch (the baseline runs as many)."""
    return max(1, math.ceil(n_unlabelled / batch_size))


def rampup_weight(step: float, ramp_steps: float) -> float:
    """Sigmoid-shaped ramp ``exp(-5 (1 - t)^2)``, ``t = step / ramp_steps`` clipped to 1; 1 without a ramp."""
    if ramp_steps <= 0:
        return 1.0
    t = min(step / ramp_steps, 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering ``range(n)``, cycled forever (labelled data is the small set)."""
    while True:
        order = torch.randperm(n, generator=generator)
        yield from (order[k : k + batch_size] for k in range(0, n, batch_size))


def _inside(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N, J] float: 1 where a heatmap point lies on the map (pixel-centre convention), else 0."""
    height, width = size
    x, y = points[..., 0], points[..., 1]
    return ((x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)).to(torch.float32)


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
    weight = visible[index].to(torch.float32) * _inside(pts, hm_size)
    target = encode_heatmaps(pts, hm_size, sigma=cfg.sigma, visible=weight)
    return warp(x, theta).to(device), target.to(device), weight.to(device)


def pseudo_targets(
    teacher: torch.Tensor, theta: torch.Tensor, weight: torch.Tensor, *,
    target: Literal["gaussian", "heatmap"] = "gaussian", sigma: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """A teacher's pseudo-labels in a student's frame (the student's input was warped by ``theta``).

    Args:
        teacher: [N, J, h, w] teacher heatmaps on the weak (unwarped) view.
        theta: [N, 2, 3] the student's hard affine.
        weight: [N, J] outlier weights.
        target: ``"gaussian"``: the teacher's refined argmax, moved by ``theta``, drawn as a peak-1
            Gaussian of ``sigma``, and weight 0 where it leaves the map; ``"heatmap"``: the released
            code's ``warp(teacher, theta)`` with the weights unchanged.
        sigma: Gaussian sigma, heatmap pixels.

    Returns:
        Targets [N, J, h, w] on the teacher's device and weights [N, J].
    """
    if target == "heatmap":
        return warp(teacher, theta), weight
    size = tuple(teacher.shape[-2:])
    points, _ = decode_heatmaps(teacher.cpu(), refine=True)
    moved = warp_points(points, theta, size)
    inside = _inside(moved, size)
    maps = encode_heatmaps(moved, size, sigma=sigma, visible=inside)
    return maps.to(teacher.device), weight * inside.to(weight.device)


def _cut_pixels(cfg: SSPCMConfig, size: tuple[int, int]) -> dict[str, Any]:
    """Cut-Occlude half-size range [lo, hi) and jitter in pixels for inputs of ``size`` (height, width)."""
    side = min(size)
    lo = round(cfg.cut_half_size[0] * side)
    return {"half_size": (lo, max(round(cfg.cut_half_size[1] * side), lo + 1)), "jitter": cfg.cut_jitter * side}


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
    *, steps_per_epoch: int, cfg: SSPCMConfig, seed: int, on_epoch: EpochHook | None = None,
) -> FitResult:  # fmt: skip
    """Train one network on labelled data only (the baseline teacher).

    Args:
        net: a heatmap network (``heatmap_stride`` attribute).
        images: [L, C, H, W] float labelled images; points [L, J, 2] (x, y) image px; visible [L, J].
        steps_per_epoch: optimiser steps per epoch (match :func:`fit_sspcm`'s for a fair baseline).
        cfg: loop settings (the unlabelled ones are unused).
        seed: seeds batch order and augmentation.
        on_epoch: called with each epoch's history row (progress logging).
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
        if on_epoch is not None:
            on_epoch(result.history[-1])
    return result


def fit_sspcm(
    nets: Sequence[nn.Module], images: torch.Tensor, points: torch.Tensor, visible: torch.Tensor,
    unlabelled: torch.Tensor, *, cfg: SSPCMConfig, seed: int, on_epoch: EpochHook | None = None,
) -> FitResult:  # fmt: skip
    """Train NET1, NET2 (teachers) and NET3 (student) with SSPCM.

    Args:
        nets: three heatmap networks with equal ``heatmap_stride``, on one device.
        images: [L, C, H, W] float labelled images; points [L, J, 2] (x, y) image px; visible [L, J].
        unlabelled: [U, C, H, W] float images (same size); one epoch = one pass over them.
        cfg: loop settings.
        seed: seeds batch order, augmentation and Cut-Occlude.
        on_epoch: called with each epoch's history row (progress logging).

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
    n_steps = steps_per_epoch(len(unlabelled), cfg.batch_size)
    ramp_steps = cfg.rampup * cfg.epochs * n_steps
    cut = dict(n_patches=cfg.cut_patches, **_cut_pixels(cfg, size), generator=generator)
    hard = dict(scale_sigma=cfg.hard_scale, rotation_sigma=cfg.hard_rotation, rotation_max=2 * cfg.hard_rotation,
                prob=cfg.hard_prob, generator=generator)  # fmt: skip
    result = FitResult(nets=list(nets))
    for net in nets:
        net.train()
    step = 0
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
            # --- teachers (no grad) on the weak view: current pair, previous-epoch pair, selection, weights
            xu = unlabelled[index].to(device)
            with torch.no_grad():
                h1, h2 = net1(xu), net2(xu)
                previous = None if snapshot is None else (snapshot[0](xu), snapshot[1](xu))
                chosen = select_pairs((h1, h2), previous)
                w = outlier_weights(
                    h1, h2, score_threshold=cfg.score_threshold, inconsistency_filter=cfg.inconsistency_filter,
                    inconsistency_threshold=cfg.inconsistency_threshold, reweight=cfg.reweight,
                )  # fmt: skip
            # --- students on the hard view: own Cut-Occlude (other teacher's / ensemble's keypoints) + own affine
            students, targets, weights = [], [], []
            for net, occlude_at, teach in ((net1, h2, h2), (net2, h1, h1), (net3, chosen.target, chosen.target)):
                keypoints = heatmap_to_image(decode_heatmaps(occlude_at.cpu())[0], stride)
                occluded = cut_occlude(xu.cpu(), keypoints, **cut).images
                theta = random_affine(len(index), size, **hard)
                students.append(net(warp(occluded, theta).to(device)))
                target_k, weight_k = pseudo_targets(teach, theta, w, target=cfg.target, sigma=cfg.sigma)
                targets.append(target_k)
                weights.append(weight_k)
            loss_cons = consistency_loss(tuple(students), tuple(targets), tuple(weights))
            loss = loss_sup + cfg.consistency_weight * rampup_weight(step, ramp_steps) * loss_cons
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            # --- bookkeeping
            sums["loss"] += loss.item()
            sums["loss_sup"] += loss_sup.item()
            sums["loss_cons"] += loss_cons.item()
            sums["kept"] += float(w.mean())
            for k, name in enumerate(PAIR_NAMES):
                sums[f"pair/{name}"] += float((chosen.pair == k).to(torch.float32).mean())
        result.history.append({"epoch": epoch, **{k: v / len(batches) for k, v in sums.items()}})
        if on_epoch is not None:
            on_epoch(result.history[-1])
    return result


@torch.no_grad()
def predict_points(
    nets: Sequence[nn.Module], images: torch.Tensor, *, batch_size: int = 64, refine: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints from the average heatmap of ``nets`` (eval mode; training flags restored after).

    Args:
        nets: one or more heatmap networks with equal ``heatmap_stride``.
        images: [N, C, H, W] float, normalised as in training.
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
