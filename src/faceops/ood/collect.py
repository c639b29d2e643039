"""Which shard samples a monitoring run reads, in which role, and the model outputs it needs of them.

Roles (:class:`SampleRoles`): the *reference* is what the monitored model trained on, the train split of its
training sources (only photos of the baseline version, when one is given); it is split by identity into a
``fit`` part (what the feature scores are fitted on) and a ``calibration`` part (in-distribution scores of
people the scores were not fitted on, like the new photos' people). *Incoming* are a source's photos that are
not reference and, with a baseline, not in it: the photos added since then.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceops.data.loader import make_loader
from faceops.data.split import identity_unit
from faceops.eval.evaluate import Predictions, predict
from faceops.train.batch import normalize_images

__all__ = ["FIT", "CALIBRATION", "SampleRoles", "faces_by_key", "gather_outputs"]

FIT, CALIBRATION = "fit", "calibration"


@dataclass(frozen=True)
class SampleRoles:
    """The rule that gives each shard sample its role.

    Attributes:
        reference_sources: the sources the model trained on.
        baseline: sample ids of the baseline version (None: no baseline, every non-reference photo is new).
        calibration_share: share of reference identities (by name hash) held out of the fit.
        monitored: sources whose incoming photos are scored (None: every source).
    """

    reference_sources: frozenset[str]
    baseline: frozenset[str] | None
    calibration_share: float
    monitored: frozenset[str] | None = None

    def role(self, source: str, split: str, key: str, identity: str | None) -> str | None:
        """``"fit"``, ``"calibration"``, the source's name (incoming), or None (not read)."""
        if source in self.reference_sources and split == "train" and (self.baseline is None or key in self.baseline):
            return CALIBRATION if identity_unit(identity or key, salt="monitor") < self.calibration_share else FIT
        if self.baseline is not None and key in self.baseline:
            return None
        return source if self.monitored is None or source in self.monitored else None


def _role_batches(
    batches: Iterable[Mapping], roles: SampleRoles, source: str, split: str
) -> Iterator[tuple[str, dict]]:
    """Each batch cut into per-role sub-batches ``(role, {"image", "key", "meta"})``; samples without a role dropped."""
    for batch in batches:
        names = [roles.role(source, split, key, meta.get("identity")) for key, meta in zip(batch["key"], batch["meta"])]
        for name in sorted({n for n in names if n is not None}):
            rows = [i for i, n in enumerate(names) if n == name]
            yield name, {"image": batch["image"][rows], "key": [batch["key"][i] for i in rows],
                         "meta": [batch["meta"][i] for i in rows]}  # fmt: skip


def _concat(parts: list[Predictions]) -> Predictions:
    return Predictions(
        keys=[k for p in parts for k in p.keys], embeddings=np.concatenate([p.embeddings for p in parts]),
        outputs={name: np.concatenate([p.outputs[name] for p in parts]) for name in parts[0].outputs},
        metas=[m for p in parts for m in p.metas],
    )  # fmt: skip


def gather_outputs(
    model: torch.nn.Module, shards: Mapping[str, Mapping[str, Sequence[Path]]], roles: SampleRoles, *,
    batch_size: int = 64, device: str = "cpu",
) -> dict[str, Predictions]:  # fmt: skip
    """Embeddings and head outputs of every sample that has a role, grouped by role (one pass, streamed).

    Args:
        model: the monitored model (eval mode, on ``device``).
        shards: source -> split -> shard files.
        roles: the rule.

    Returns:
        role (``"fit"``, ``"calibration"`` or an incoming source's name) -> :class:`Predictions` in shard
        order; roles without samples are absent.
    """
    parts: dict[str, list[Predictions]] = {}
    for source in sorted(shards):
        for split in sorted(shards[source]):
            if not shards[source][split]:
                continue
            loader = make_loader(list(shards[source][split]), batch_size=batch_size, num_workers=0)
            for name, batch in _role_batches(loader, roles, source, split):
                parts.setdefault(name, []).append(predict(model, [batch], normalize=normalize_images, device=device))
    return {name: _concat(found) for name, found in parts.items()}


def faces_by_key(urls: Sequence[Path], keys: Sequence[str], *, batch_size: int = 64) -> list[np.ndarray]:
    """The faces [H, W, 3] uint8 of ``keys`` from the shards ``urls``, in the order of ``keys``.

    Raises:
        KeyError: a key is in none of the shards (the message names it).
    """
    wanted, found = set(keys), {}
    for batch in make_loader(list(urls), batch_size=batch_size, num_workers=0, decode="numpy"):
        found.update({key: image for key, image in zip(batch["key"], batch["image"]) if key in wanted})
    missing = [key for key in keys if key not in found]
    if missing:
        raise KeyError(f"{len(missing)} faces not in the shards, e.g. {missing[:3]}")
    return [found[key] for key in keys]
