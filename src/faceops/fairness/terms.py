"""GABN's two training objectives as ``LossTerm``s: attention maps a group discriminator cannot tell apart, and
recognition of faces whose most attended cells are erased.

Huang et al., "Gradient Attention Balance Network: Mitigating Face Recognition Racial Bias via Gradient
Attention", CVPR Workshops 2023 (arXiv 2304.02284). Stated in its abstract: gradient attention maps of the
recogniser, made consistent across races by adversarial learning, and Top-N erasing of the sensitive regions.
Our reconstruction (no public code), every weight and schedule a param (``faceops.config.gabn``):

- the identity score is the log-probability the margin head gives each face's true identity (the task
  loss's recognition part: Grad-CAM's class logit would need the class centres, which the loss owns);
- the map is taken over the backbone's last feature map (SwinFace's last stage, 7x7 at 112 px), read by
  a forward hook on the trunk, so the model itself is unchanged;
- :class:`AttentionAdversaryTerm`: an MLP on the flattened map predicts the face's group; it learns through
  a gradient-reversal layer, so the backbone (through the map, by double backprop) learns the opposite;
- :class:`AttentionErasingTerm`: a chosen face's ``N`` most attended cells are erased and the copy is
  recognised under the face's labels. The map of step t exists only after step t's forward and fit runs the
  model once per step, so the erased copies of step t join step t+1's forward (a one-step delay).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
import torch
import torch.nn as nn
import torch.nn.functional as F

from faceops.config.gabn import GabnParams
from faceops.fairness.attention import erase_cells, gradient_attention, top_n_cells
from faceops.io.shards import iter_tar_samples
from faceops.losses import reverse_gradient
from faceops.models.tasks import RECOGNITION, RECOGNITION_LABEL
from faceops.train.batch import normalize_images
from faceops.train.terms import LossTerm, TermInputs, linear_ramp

__all__ = ["AttentionAdversaryTerm", "AttentionErasingTerm", "FeatureTap", "attention_maps", "gabn_terms",
           "shard_groups"]  # fmt: skip

#: Value of erased pixels (uint8): mid grey, 0 after normalisation.
ERASE_FILL = 128


class FeatureTap:
    """The output of one module in the latest forward pass, kept by a forward hook (``select`` picks a part)."""

    def __init__(self, module: nn.Module, select: Callable[[Any], torch.Tensor] = lambda out: out) -> None:
        self.value: torch.Tensor | None = None
        self._select = select
        self._handle = module.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, args: Any, output: Any) -> None:
        self.value = self._select(output)

    def remove(self) -> None:
        """Detach the hook (the tapped module then runs as if never tapped)."""
        self._handle.remove()


def attention_maps(inputs: TermInputs, tap: FeatureTap, *, create_graph: bool) -> torch.Tensor:
    """GABN's maps [B, H, W] of the batch's own rows: Grad-CAM of the summed log-probabilities of their true
    identities over the tapped feature map. Rows without an identity label get all-zero maps."""
    if tap.value is None:
        raise RuntimeError("the feature tap saw no forward pass yet; attention maps are taken inside fit's step")
    n = inputs.batch_size
    _, parts = inputs.task_loss({k: v[:n] for k, v in inputs.outputs.items()}, inputs.targets, inputs.masks)
    if RECOGNITION not in parts:
        raise ValueError("GABN needs the recognition loss (a model and data with identities)")
    labelled = inputs.masks[RECOGNITION_LABEL].sum().clamp(min=1)
    score = -parts[RECOGNITION] * labelled  # sum over labelled rows of log p(true identity)
    return gradient_attention(score, tap.value, create_graph=create_graph)[:n]


class AttentionAdversaryTerm(LossTerm):
    """Cross-entropy of a group discriminator on the attention maps; the backbone gets it reversed.

    Args:
        tap: the backbone's last feature map (:class:`FeatureTap`).
        group_of: sample id -> group index (ids absent: group unknown, not scored).
        num_groups: number of groups (>= 2).
        grid: side of the feature map (7 for SwinFace at 112 px).
        width: hidden width of the discriminator.
        weight, schedule: the term's weight and its ramp (``LossTerm``).
    """

    def __init__(self, tap: FeatureTap, group_of: Mapping[str, int], num_groups: int, grid: int, *, width: int = 64,
                 weight: float = 0.1, schedule: Callable[[float], float] | None = None,
                 name: str = "gabn_adv") -> None:  # fmt: skip
        super().__init__(name, weight, schedule)
        if num_groups < 2:
            raise ValueError(f"GABN balances attention across groups and needs at least 2, got {num_groups}")
        self.tap, self.group_of = tap, dict(group_of)
        self.discriminator = nn.Sequential(nn.Linear(grid * grid, width), nn.ReLU(), nn.Linear(width, num_groups))

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        maps = attention_maps(inputs, self.tap, create_graph=True)  # [B, H, W]
        groups = torch.tensor([self.group_of.get(k, -1) for k in inputs.batch.keys], device=maps.device)
        scored = (groups >= 0) & inputs.masks[RECOGNITION_LABEL].to(maps.device)
        logits = self.discriminator(reverse_gradient(maps.flatten(1)))  # [B, groups]
        if not bool(scored.any()):
            return logits.sum() * 0.0  # keeps every parameter in the graph (DDP), with a zero gradient
        return F.cross_entropy(logits[scored], groups[scored])


class AttentionErasingTerm(LossTerm):
    """Recognition loss of erased copies: faces of step t with their Top-N attended cells erased, in step t+1.

    Args:
        tap: the backbone's last feature map.
        top_n: cells erased per chosen face.
        probability: chance that a labelled face gets an erased copy.
        start: progress from which copies are made (the warm-up: early maps are noise).
        weight: the term's weight (``LossTerm``).
        seed: seeds the choice of faces (its generator is checkpointed by ``fit``).
    """

    def __init__(self, tap: FeatureTap, *, top_n: int = 2, probability: float = 0.5, start: float = 0.2,
                 weight: float = 1.0, seed: int = 0, name: str = "gabn_erase") -> None:  # fmt: skip
        super().__init__(name, weight)
        if not 0.0 <= probability <= 1.0 or not 0.0 <= start <= 1.0 or top_n < 1:
            raise ValueError(f"erasing needs top_n >= 1 and probability, start in [0, 1]; got {top_n}, {probability}, "
                             f"{start}")  # fmt: skip
        self.tap, self.top_n, self.probability, self.start = tap, top_n, float(probability), float(start)
        self.generator = torch.Generator().manual_seed(seed)
        self._pending: dict[str, Any] = {}

    def extra_rows(self, images: torch.Tensor, batch: Any) -> torch.Tensor | None:
        """Last step's erased copies (none before the warm-up or when no face was chosen)."""
        return normalize_images(self._pending["images"].to(images.device)) if self._pending else None

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        value = inputs.outputs[RECOGNITION].new_zeros(())
        if self._pending:
            device = value.device
            targets = {k: v.to(device) for k, v in self._pending["targets"].items()}
            masks = {k: v.to(device) for k, v in self._pending["masks"].items()}
            outputs = {k: v[inputs.rows] for k, v in inputs.outputs.items()}
            value = inputs.task_loss(outputs, targets, masks)[1][RECOGNITION]
        self._pending = self._erase(inputs) if inputs.progress >= self.start and self.probability > 0 else {}
        return value

    def _erase(self, inputs: TermInputs) -> dict[str, Any]:
        """Erased copies of this step's chosen faces with their labels (CPU), or ``{}`` when none is chosen."""
        draw = torch.rand(inputs.batch_size, generator=self.generator) < self.probability
        chosen = draw & inputs.masks[RECOGNITION_LABEL].cpu()
        if not bool(chosen.any()):
            return {}
        maps = attention_maps(inputs, self.tap, create_graph=False).detach().cpu()[chosen]
        images = erase_cells(inputs.batch.images[chosen], top_n_cells(maps, self.top_n), ERASE_FILL)
        pick = chosen.nonzero().squeeze(1)
        return {"images": images.contiguous(), "targets": {k: v.cpu()[pick] for k, v in inputs.targets.items()},
                "masks": {k: v.cpu()[pick] for k, v in inputs.masks.items()}}  # fmt: skip

    def get_extra_state(self) -> dict[str, Any]:
        """The copies waiting for the next step, so a resumed run trains on what an uninterrupted one would."""
        return {"pending": self._pending}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._pending = dict(state["pending"])


def shard_groups(urls: Iterable[str | Path]) -> dict[str, str | None]:
    """Sample id -> its ``group`` label (None when missing) for every sample of the shards (JSON only)."""
    return {sample["__key__"]: orjson.loads(sample["json"]).get("group") for url in urls
            for sample in iter_tar_samples(url)}  # fmt: skip


def gabn_terms(cfg: GabnParams, model: nn.Module, groups: Mapping[str, str | None], *, seed: int) -> list[LossTerm]:
    """GABN's two terms for ``model`` (a SwinFace: its ``trunk`` gives the feature maps), per ``cfg``.

    Args:
        cfg: the ``gabn`` subsection of ``train`` or ``adapt``.
        model: the network being trained.
        groups: sample id -> group of every training sample (:func:`shard_groups`).
        seed: seeds the erasing choices.

    Raises:
        ValueError: the model has no trunk of feature maps, or the samples hold fewer than 2 groups.
    """
    trunk = getattr(model, "trunk", None)
    if trunk is None or not hasattr(trunk, "final_grid"):
        raise ValueError(f"GABN reads the last feature map of a SwinFace trunk; {type(model).__name__} has none")
    names = sorted({g for g in groups.values() if g is not None})
    if len(names) < 2:
        raise ValueError(f"GABN balances attention across groups, but the training samples hold groups {names}; "
                         "train on data with at least 2 `group` labels or set gabn.enabled: false")  # fmt: skip
    tap = FeatureTap(trunk, select=lambda taps: taps[-1])
    index = {name: i for i, name in enumerate(names)}
    group_of = {key: index[g] for key, g in groups.items() if g is not None}
    adversary = AttentionAdversaryTerm(tap, group_of, len(names), trunk.final_grid, width=cfg.discriminator_width,
                                       weight=cfg.adversarial_weight,
                                       schedule=linear_ramp(cfg.adversarial_warmup, cfg.adversarial_full))  # fmt: skip
    erasing = AttentionErasingTerm(tap, top_n=cfg.erase_top_n, probability=cfg.erase_probability,
                                   start=cfg.erase_warmup, weight=cfg.erase_weight, seed=seed)  # fmt: skip
    return [adversary, erasing]
