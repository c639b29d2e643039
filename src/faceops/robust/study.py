"""SGA against SPGD and random noise of the same budget: the ``robustness`` stage's measurement.

For each frozen classifier the images are split once (seeded) into attack images, on which the
perturbations are learnt, and held-out images, on which the fooling rate (share of top-1 predictions that
change) is reported, as the SGA paper reports it on images the perturbation never saw. SGA and SPGD run
the same epochs over the same batches; random sign noise of the same L-inf budget is the floor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from faceops.data.loader import make_loader
from faceops.robust.targets import model_classifiers
from faceops.robust.uap import Classifier, UAPConfig, fooling_rate, predict_labels, random_sign_perturbation, train_uap

__all__ = ["METHODS", "AttackResult", "attack_model", "compare_attacks", "perturbation_image"]

METHODS = ("sga", "spgd", "random")


@dataclass(frozen=True)
class AttackResult:
    """What :func:`compare_attacks` measured.

    Attributes:
        metrics: ``<target>/<method>/fooling_rate`` (held out), ``.../fooling_rate_attack``, ``.../linf``, and
            ``<target>/attack_images``, ``<target>/held_out_images``.
        curves: target -> rows ``{epoch, sga, spgd, random}`` of held-out fooling rates after each epoch.
        perturbations: ``<target>/<method>`` -> delta [3, H, W] float32 in [0, 1] pixel units.
    """

    metrics: dict[str, float | int]
    curves: dict[str, list[dict[str, float]]]
    perturbations: dict[str, np.ndarray]


def compare_attacks(
    classifiers: Mapping[str, Classifier], images: torch.Tensor, cfg: UAPConfig, *, held_out_share: float, seed: int,
    batch_size: int = 64, device: torch.device | str = "cpu", progress: Callable[[int], None] | None = None,
) -> AttackResult:  # fmt: skip
    """Learn SGA and SPGD perturbations against each classifier and measure them with random noise.

    Args:
        classifiers: target name -> frozen classifier over images in [0, 1] (on ``device``).
        images: uint8 faces [N, 3, H, W].
        cfg: SGA's settings (SPGD uses the same budget, step, batches and epochs).
        held_out_share: share of the images kept out of the attack to measure on.
        seed: the split, the batch order and the noise.
        batch_size: images per forward when predicting.
        progress: called with 1 after each epoch of each method and target.

    Raises:
        ValueError: the split leaves either part empty.
    """
    n_held = round(held_out_share * len(images))
    if not 0 < n_held < len(images):
        raise ValueError(f"held_out_share {held_out_share} of {len(images)} images leaves an empty part; "
                         "give more images or another share")  # fmt: skip
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    attack, held = images[order[n_held:].sort().values], images[order[:n_held].sort().values]
    cfg = replace(cfg, batch_size=min(cfg.batch_size, len(attack)))
    noise = random_sign_perturbation(tuple(images.shape[1:]), cfg.eps, seed=seed).to(device)
    metrics: dict[str, float | int] = {}
    curves: dict[str, list[dict[str, float]]] = {}
    perturbations: dict[str, np.ndarray] = {}
    for target, classifier in sorted(classifiers.items()):
        deltas, curves[target] = _attack_one(classifier, attack, held, noise, cfg, seed=seed, batch_size=batch_size,
                                             device=device, progress=progress)  # fmt: skip
        for method in METHODS:
            delta = deltas[method]
            metrics[f"{target}/{method}/fooling_rate"] = curves[target][-1][method]
            metrics[f"{target}/{method}/fooling_rate_attack"] = fooling_rate(classifier, attack, delta,
                                                                             batch_size=batch_size, device=device)  # fmt: skip
            metrics[f"{target}/{method}/linf"] = float(delta.abs().max())
            perturbations[f"{target}/{method}"] = delta.detach().float().cpu().numpy()
        metrics.update({f"{target}/attack_images": len(attack), f"{target}/held_out_images": len(held)})
    return AttackResult(metrics, curves, perturbations)


def _attack_one(
    classifier: Classifier, attack: torch.Tensor, held: torch.Tensor, noise: torch.Tensor, cfg: UAPConfig, *,
    seed: int, batch_size: int, device: torch.device | str, progress: Callable[[int], None] | None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:  # fmt: skip
    """SGA and SPGD against one classifier: the three perturbations and the held-out fooling rate per epoch."""
    clean = predict_labels(classifier, held, batch_size=batch_size, device=device)

    def rate(delta: torch.Tensor) -> float:
        return fooling_rate(classifier, held, delta, clean=clean, batch_size=batch_size, device=device)

    floor = rate(noise)
    rows = [{"epoch": float(e), "random": floor} for e in range(1, cfg.epochs + 1)]
    deltas = {"random": noise}
    for method in ("sga", "spgd"):

        def record(epoch: int, delta: torch.Tensor, method: str = method) -> None:
            rows[epoch - 1][method] = rate(delta)
            if progress is not None:
                progress(1)

        deltas[method] = train_uap(classifier, attack, cfg, method=method, seed=seed, device=device, on_epoch=record)
    return deltas, rows


def perturbation_image(delta: np.ndarray, eps: float) -> np.ndarray:
    """delta [3, H, W] shown as an RGB image [H, W, 3] uint8: -eps black, 0 mid-grey, +eps white per channel."""
    return np.clip(np.round(127.5 + 127.5 * np.asarray(delta).transpose(1, 2, 0) / eps), 0, 255).astype(np.uint8)


def _first_faces(urls: Sequence[Path], limit: int, batch_size: int) -> tuple[torch.Tensor, list[str | None]]:
    """The first ``limit`` faces by sample id (uint8 [N, 3, H, W]) and their identity labels."""
    keyed = []
    for batch in make_loader(list(urls), batch_size=batch_size, num_workers=0):
        keyed += [(k, img, m.get("identity")) for k, img, m in zip(batch["key"], batch["image"], batch["meta"])]
    keyed = sorted(keyed, key=lambda row: row[0])[:limit]
    if not keyed:
        raise ValueError(f"no faces in {[str(u) for u in urls]}")
    return torch.stack([img.contiguous() for _, img, _ in keyed]), [ident for _, _, ident in keyed]


def attack_model(
    model: torch.nn.Module, source_urls: Mapping[str, Sequence[Path]], *, targets: Sequence[str], cfg: UAPConfig,
    max_images: int, held_out_share: float, seed: int, batch_size: int = 64, device: str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> dict[str, AttackResult]:  # fmt: skip
    """:func:`compare_attacks` on each source's shards against the named classifiers of a faceops model.

    Args:
        model: the trained model (eval mode, on ``device``).
        source_urls: source -> shard files of the attacked split.
        targets: classification outputs and/or ``identity`` (:func:`faceops.robust.targets.model_classifiers`).
        cfg, held_out_share, seed, batch_size, progress: as in :func:`compare_attacks`.
        max_images: faces read per source (the first by sample id).
    """
    results = {}
    for source, urls in sorted(source_urls.items()):
        images, identities = _first_faces(urls, max_images, batch_size)
        classifiers = model_classifiers(model, targets, images, identities, batch_size=batch_size, device=device)
        results[source] = compare_attacks(classifiers, images, cfg, held_out_share=held_out_share, seed=seed,
                                          batch_size=batch_size, device=device, progress=progress)  # fmt: skip
    return results
