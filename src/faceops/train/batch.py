"""From shard samples to model inputs: image normalisation, label scan, targets + masks, flips.

The one definition of SwinFace's input normalisation lives here (``normalize_images``): training,
evaluation and every consumer of an exported model must use it, and the exported model file repeats
the constants (``IMAGE_MEAN``, ``IMAGE_STD``) so a reader outside faceops can reproduce it.

Labels follow docs/ARCHITECTURE.md: a missing label is ``None`` (or absent) and becomes a False mask,
never a negative class. Only the labels that a supervised head reads become targets; everything else
in the shard ``json`` (``group``, ``landmarks``, ``keypoints``, ``id``, ``source``) is dropped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from faceops.io.shards import iter_tar_samples
from faceops.models.tasks import RECOGNITION_LABEL, HeadSpec

__all__ = [
    "IMAGE_MEAN",
    "IMAGE_STD",
    "normalize_images",
    "identity_key",
    "LabelStats",
    "label_stats",
    "to_targets",
    "flip_images",
]

#: SwinFace's input normalisation, ``(x / 255 - IMAGE_MEAN) / IMAGE_STD``: uint8 [0, 255] -> [-1, 1].
IMAGE_MEAN = 0.5
IMAGE_STD = 0.5


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 faces [B, 3, H, W] -> float32 [B, 3, H, W] in [-1, 1] (memory format kept)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize_images expects uint8 images in [0, 255], got {images.dtype}")
    return (images.float() / 255.0 - IMAGE_MEAN) / IMAGE_STD


def identity_key(source: str, identity: str) -> str:
    """Class name of an identity: ``"<source>/<identity>"``.

    Why the source prefix: identity labels are names local to a data set; ``id_0001`` of two sources
    are two different people and must not share a class centre.
    """
    return f"{source}/{identity}"


@dataclass(frozen=True)
class LabelStats:
    """What training needs to know about its labels before the first step.

    Attributes:
        identities: sorted identity class names (``identity_key``); class ``i`` of the margin head is
            ``identities[i]``. Stored in checkpoints and in the exported model.
        age_mean: mean ``age`` over samples that have one (``None`` when none has).
        samples: number of samples read.
    """

    identities: list[str]
    age_mean: float | None
    samples: int


def label_stats(shards: Iterable[str | Path]) -> LabelStats:
    """Scan the JSON members of ``shards`` (images are not decoded) for identities and the mean age."""
    names: set[str] = set()
    age_sum, age_count, samples = 0.0, 0, 0
    for shard in shards:
        for sample in iter_tar_samples(shard):
            meta = json.loads(sample["json"])
            samples += 1
            if meta.get(RECOGNITION_LABEL) is not None:
                names.add(identity_key(meta["source"], meta[RECOGNITION_LABEL]))
            if meta.get("age") is not None:
                age_sum, age_count = age_sum + float(meta["age"]), age_count + 1
    return LabelStats(sorted(names), age_sum / age_count if age_count else None, samples)


def _class_index(value: object, num_classes: int, key: str, sample: str) -> int:
    """A class label (int or bool, 0 <= v < num_classes) as int; anything else raises."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value < num_classes:
        raise ValueError(
            f"sample {sample!r}: label {key!r} is {value!r}; expected a class index in [0, {num_classes}) "
            "or null for a missing label"
        )
    return value


def _regression_value(value: object, key: str, sample: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"sample {sample!r}: label {key!r} is {value!r}; expected a finite number or null")
    return float(value)


def to_targets(
    metas: Sequence[Mapping[str, object]],
    heads: Sequence[HeadSpec],
    identity_to_class: Mapping[str, int] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Label dicts of a batch -> ``(targets, masks)`` for ``SwinFaceLoss``.

    Args:
        metas: one shard ``json`` dict per sample (labels + ``id`` + ``source``).
        heads: the supervised analysis heads (``model.head_specs``; ``()`` for recognition only).
        identity_to_class: identity class name (``identity_key``) -> class index; ``None`` = no
            recognition target.

    Returns:
        Dicts keyed by label key (``"identity"``, ``"age"``, ...), each [B]: int64 targets for
        classification labels and identity, float32 for regression; bool masks, True only where the
        label is present. Masked-out targets hold 0.

    Raises:
        ValueError: a present label outside its classes, a non-numeric age, or an identity that is
            not one of the training identities (the message names the sample).
    """
    kinds: dict[str, tuple[str, int]] = {h.label: (h.kind, h.num_outputs) for h in heads}
    if identity_to_class is not None:
        kinds[RECOGNITION_LABEL] = ("identity", len(identity_to_class))
    targets: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    for key, (kind, num_classes) in kinds.items():
        values: list[float | int] = []
        present: list[bool] = []
        for meta in metas:
            value, sample = meta.get(key), str(meta.get("id"))
            present.append(value is not None)
            if value is None:
                values.append(0)
            elif kind == "regression":
                values.append(_regression_value(value, key, sample))
            elif kind == "classification":
                values.append(_class_index(value, num_classes, key, sample))
            else:
                name = identity_key(str(meta.get("source")), str(value))
                if name not in identity_to_class:  # type: ignore[operator]
                    raise ValueError(
                        f"sample {sample!r}: identity {name!r} is not one of the {num_classes} training identities; "
                        "identity classes come from the train split (identity_classes); check the source list"
                    )
                values.append(identity_to_class[name])  # type: ignore[index]
        dtype = torch.float32 if kind == "regression" else torch.int64
        targets[key] = torch.tensor(values, dtype=dtype)
        masks[key] = torch.tensor(present, dtype=torch.bool)
    return targets, masks


def flip_images(images: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image [B, 3, H, W] left-right with probability ``p``.

    Draws B numbers from ``generator`` (none when ``p`` is 0). No label changes: the labels training
    reads (identity, expression, age, attributes) are mirror-invariant; landmarks would swap, but
    training does not read them.
    """
    if p <= 0.0:
        return images
    flip = torch.rand(images.shape[0], generator=generator) < p  # [B]
    if not bool(flip.any()):
        return images
    return torch.where(flip.view(-1, 1, 1, 1).to(images.device), images.flip(-1), images)
