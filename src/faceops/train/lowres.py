"""LRFR's training recipe as an extra loss term: a low-resolution view of every face + LogExp between the views.

Paper: Ling, Lu, Xu, Deng et al., "Dive into the Resolution Augmentations and Metrics in Low Resolution Face
Recognition: A Plain yet Effective New Baseline", AAAI 2023 workshop, arXiv:2302.05621 (abstract only readable;
the recipe below is from the authors' code, github.com/hurricanelx/LRFR at 1e4b4ee: ``pair_mult_solu_webface.py``,
``train_webface_pair.py``, ``metrics.py``). Written independently.

Multi-resolution augmentation: each face's low-resolution view is the face bicubic-resized down to ``r`` px
and back up (``faceops.sr.degrade``, antialiased as PIL's resize that LRFR uses), ``r`` drawn per face from
difficulty buckets (hard / medium / easy: 7 / 14 / 20 px for 112 px faces at 50 / 30 / 20 %, scaled to other
face sizes) with a cumulative-probability draw as the official dataset class. The view is made from the
batch's faces *after* their flip, so both views are flipped identically (the official code flips each view
independently, which often compares a face with its mirror image; the paper describes pairs of one image).

Objective (:class:`LowResolutionTerm`): the view rows join the batch in the one forward of the model
(``faceops.train.terms``); the term returns ``task_loss(views) + logexp_weight x LogExp(embedding(face),
embedding(view))`` on L2-normalised embeddings (``faceops.losses.logexp``). LRFR's total is
``(CE(face) + CE(view)) / 2 + LogExp``; ours is the task loss on the faces plus this term, i.e. with
``logexp_weight = 2`` twice LRFR's, the same objective up to scale. Ours, not LRFR's: the views share the
forward (and so batch statistics) with the faces, where LRFR runs two forwards; the task loss on the views
supervises every head the model has, not only the identity classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from faceops.losses.logexp import Reduction, logexp_loss
from faceops.models.tasks import RECOGNITION
from faceops.sr.degrade import degrade, scaled_side
from faceops.train.batch import normalize_images
from faceops.train.terms import LossTerm, TermInputs

if TYPE_CHECKING:
    from faceops.config.lowres import LowResTrainParams

__all__ = ["LRFR_BUCKETS", "LRFR_PROBS", "LowResolutionTerm", "draw_buckets", "low_resolution_views", "lowres_terms"]

#: LRFR's difficulty buckets (px, for 112 px faces) and their probabilities (its dataset class's defaults).
LRFR_BUCKETS = (7, 14, 20)
LRFR_PROBS = (0.5, 0.3, 0.2)
#: Added to the run's seed: the term's draws must not repeat the batch stream's flip draws (same seed, same stream).
SEED_OFFSET = 2302


def draw_buckets(count: int, probs: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """Bucket index of each of ``count`` samples: ``u ~ U[0, 1)`` falls in the cumulative ``probs`` (int64 [count])."""
    cumulative = torch.tensor(list(probs), dtype=torch.float64).cumsum(0)[:-1]  # the last bucket takes the rest
    u = torch.rand(count, generator=generator, dtype=torch.float64)
    return (u.unsqueeze(1) >= cumulative.unsqueeze(0)).sum(dim=1)


def low_resolution_views(images: torch.Tensor, sides: torch.Tensor) -> torch.Tensor:
    """Each face [B, 3, H, W] (uint8) bicubic-resized down to ``sides[i]`` px and back up (uint8, same shape)."""
    views = torch.empty_like(images)
    for side in sides.unique().tolist():
        rows = (sides == side).nonzero().flatten()
        views[rows] = degrade(images[rows], int(side))
    return views


class LowResolutionTerm(LossTerm):
    """LRFR: low-resolution views in the same forward, supervised like their faces, plus LogExp between views.

    Args:
        seed: seeds the term's own generator (resolution draws); it is checkpointed with the run.
        buckets: difficulty buckets in px for 112 px faces (scaled to the batch's face size).
        probs: probability of each bucket (sums to 1).
        weight: the term's weight in the total loss.
        logexp_weight: LogExp's weight inside the term (relative to the task loss on the views).
        p, reduction: LogExp's exponent and normalisation (``"sample"``: paper, ``"batch"``: released code).
    """

    def __init__(self, *, seed: int, buckets: Sequence[int] = LRFR_BUCKETS, probs: Sequence[float] = LRFR_PROBS,
                 weight: float = 1.0, logexp_weight: float = 2.0, p: float = 1.0,
                 reduction: Reduction = "sample") -> None:  # fmt: skip
        super().__init__("lowres", weight)
        if len(buckets) != len(probs) or abs(sum(probs) - 1.0) > 1e-6 or min(probs) < 0:
            raise ValueError(f"lowres buckets {list(buckets)} need one probability each, summing to 1; got {list(probs)}")
        self.buckets, self.probs = list(buckets), list(probs)
        self.logexp_weight, self.p, self.reduction = logexp_weight, p, reduction
        self.generator = torch.Generator().manual_seed(seed)

    def extra_rows(self, images: torch.Tensor, batch: Any) -> torch.Tensor:
        """The batch's faces (uint8, already flipped) degraded per sample, normalised, on ``images``' device."""
        faces = batch.images
        sides = torch.tensor([scaled_side(b, faces.shape[-1]) for b in self.buckets])
        chosen = sides[draw_buckets(faces.shape[0], self.probs, self.generator)]
        return normalize_images(low_resolution_views(faces, chosen)).to(images.device)

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        n, rows = inputs.batch_size, inputs.rows
        view_outputs = {name: value[rows] for name, value in inputs.outputs.items()}
        view_task, _ = inputs.task_loss(view_outputs, inputs.targets, inputs.masks)
        faces = F.normalize(inputs.outputs[RECOGNITION][:n].float(), dim=1)
        views = F.normalize(view_outputs[RECOGNITION].float(), dim=1)
        return view_task + self.logexp_weight * logexp_loss(faces, views, p=self.p, reduction=self.reduction)


def lowres_terms(cfg: LowResTrainParams, *, seed: int) -> list[LossTerm]:
    """The run's LRFR term from a ``lowres`` params subsection (``[]`` when it is not enabled)."""
    if not cfg.enabled:
        return []
    return [LowResolutionTerm(seed=seed + SEED_OFFSET, buckets=cfg.buckets, probs=cfg.probs, weight=cfg.weight,
                              logexp_weight=cfg.logexp_weight, p=cfg.p, reduction=cfg.normalization)]  # fmt: skip
