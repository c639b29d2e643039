"""Which shard samples a monitoring run reads, in which role, and the model outputs it needs of them.

Roles (:class:`SampleRoles`): the *reference* is what the monitored model trained on, the train split of its
training sources (only photos of the baseline version, when one is given); it is split by identity into a
``fit`` part (what the feature scores are fitted on) and a ``calibration`` part (in-distribution scores of
people the scores were not fitted on, like the new photos' people). *Incoming* are a source's photos that are
not reference and, with a baseline, not in it: the photos added since then.

Each shard is predicted whole, in batches that never span two shards, so a shard's outputs depend on its
own bytes only and can be kept per shard (:class:`ShardOutputs`): after new photos arrive, a monitoring run
with the same model predicts only the shards that changed instead of the whole reference set again.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceops.data.loader import make_loader
from faceops.data.split import identity_unit
from faceops.eval.evaluate import Predictions, predict
from faceops.io.atomic import atomic_write_bytes
from faceops.io.digest import sha256_file
from faceops.train.batch import normalize_images

__all__ = ["FIT", "CALIBRATION", "SampleRoles", "ShardOutputs", "faces_by_key", "gather_outputs"]

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

    def reads(self, source: str) -> bool:
        """Whether any sample of ``source`` can have a role (otherwise its shards are not read)."""
        return source in self.reference_sources or self.monitored is None or source in self.monitored

    def role(self, source: str, split: str, key: str, identity: str | None) -> str | None:
        """``"fit"``, ``"calibration"``, the source's name (incoming), or None (not read)."""
        if source in self.reference_sources and split == "train" and (self.baseline is None or key in self.baseline):
            return CALIBRATION if identity_unit(identity or key, salt="monitor") < self.calibration_share else FIT
        if self.baseline is not None and key in self.baseline:
            return None
        return source if self.monitored is None or source in self.monitored else None


@dataclass(frozen=True)
class ShardOutputs:
    """A folder of whole-shard model outputs, one ``<shard sha256>.npz`` each, for *one* model and setting.

    The caller keys the folder (the model's bytes, batch size, device, library versions: what changes the
    outputs' last bits) and prunes old folders; here a shard's content digest finds its file. The files hold
    arrays and a JSON text only, read with ``allow_pickle=False``.
    """

    folder: Path

    def entry(self, shard: Path) -> Path:
        """Where the outputs of ``shard``'s bytes are kept (hashes the shard once; pass it to load and save)."""
        return self.folder / f"{sha256_file(shard)}.npz"

    def load(self, path: Path) -> Predictions | None:
        """The outputs kept at ``path`` (:meth:`entry`), or None."""
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as kept:
            rows = json.loads(kept["rows"].tobytes().decode())
            outputs = {name: kept[f"out/{name}"] for name in rows["heads"]}
            return Predictions(rows["keys"], kept["embeddings"], outputs, rows["metas"])

    def save(self, path: Path, found: Predictions) -> None:
        """Keep ``found`` (all samples of the shard whose :meth:`entry` is ``path``) atomically."""
        rows = json.dumps({"keys": found.keys, "metas": found.metas, "heads": sorted(found.outputs)})
        buffer = io.BytesIO()
        np.savez(buffer, embeddings=found.embeddings, rows=np.frombuffer(rows.encode(), dtype=np.uint8),
                 **{f"out/{name}": value for name, value in found.outputs.items()})  # fmt: skip
        atomic_write_bytes(path, buffer.getvalue())
        os.utime(self.folder)  # most recently used: pruned last


def _shard_predictions(model: torch.nn.Module, shard: Path, *, batch_size: int, device: str,
                       kept: ShardOutputs | None) -> Predictions:  # fmt: skip
    """Outputs of every sample of ``shard`` (from ``kept`` when it has them, else predicted and kept)."""
    def predicted() -> Predictions:
        loader = make_loader([shard], batch_size=batch_size, num_workers=0)
        return predict(model, loader, normalize=normalize_images, device=device)

    if kept is None:
        return predicted()
    entry = kept.entry(shard)
    found = kept.load(entry)
    if found is None:
        found = predicted()
        kept.save(entry, found)
    return found


def _take(found: Predictions, rows: list[int]) -> Predictions:
    return Predictions(
        keys=[found.keys[i] for i in rows], embeddings=found.embeddings[rows],
        outputs={name: value[rows] for name, value in found.outputs.items()}, metas=[found.metas[i] for i in rows],
    )  # fmt: skip


def _concat(parts: list[Predictions]) -> Predictions:
    return Predictions(
        keys=[k for p in parts for k in p.keys], embeddings=np.concatenate([p.embeddings for p in parts]),
        outputs={name: np.concatenate([p.outputs[name] for p in parts]) for name in parts[0].outputs},
        metas=[m for p in parts for m in p.metas],
    )  # fmt: skip


def gather_outputs(
    model: torch.nn.Module, shards: Mapping[str, Mapping[str, Sequence[Path]]], roles: SampleRoles, *,
    batch_size: int = 64, device: str = "cpu", kept: ShardOutputs | None = None,
) -> dict[str, Predictions]:  # fmt: skip
    """Embeddings and head outputs of every sample that has a role, grouped by role, shard by shard.

    Args:
        model: the monitored model (eval mode, on ``device``).
        shards: source -> split -> shard files.
        roles: the rule.
        kept: whole-shard outputs of this model kept from earlier runs (read, and written for new shards).

    Returns:
        role (``"fit"``, ``"calibration"`` or an incoming source's name) -> :class:`Predictions` in shard
        order; roles without samples are absent.
    """
    parts: dict[str, list[Predictions]] = {}
    for source in sorted(shards):
        if not roles.reads(source):
            continue
        for split in sorted(shards[source]):
            for shard in shards[source][split]:
                found = _shard_predictions(model, Path(shard), batch_size=batch_size, device=device, kept=kept)
                names = [roles.role(source, split, key, meta.get("identity"))
                         for key, meta in zip(found.keys, found.metas)]  # fmt: skip
                for name in sorted({n for n in names if n is not None}):
                    parts.setdefault(name, []).append(_take(found, [i for i, n in enumerate(names) if n == name]))
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
