"""Seeded generation of the synthetic face data set and its ``labels.csv`` text.

Determinism: identity ``i`` draws from an RNG seeded by ``(seed, 0, i)`` and its photo ``n`` from
``(seed, 1, i, n)``, so the same arguments give byte-identical JPEGs (OpenCV drawing and JPEG
encoding at a fixed quality are deterministic) and adding identities or photos never changes the
ones already there. Writing files is the ``sample`` stage's job.

Labels: the attributes a photo can change (accessories, ``Smiling``, ``Mouth_Slightly_Open``,
``Blurry``, ``Young``) come from that photo; all others are fixed per identity.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from faceops.labels import CELEBA_ATTRIBUTES, EXPRESSIONS, LANDMARK_COLUMNS
from faceops.sample.face import Look, render_face
from faceops.sample.features import AGE_LINES_FROM
from faceops.sample.head import head_box
from faceops.sample.identity import GROUPS, Identity, draw_identity
from faceops.sample.scene import apply_camera, draw_background, draw_camera, place_face

__all__ = ["SampleImage", "generate_sample", "labels_csv", "LABELS_CSV_COLUMNS"]

#: Columns of ``labels.csv``, in order.
LABELS_CSV_COLUMNS: tuple[str, ...] = (
    "path", "identity", "expression", "age", *CELEBA_ATTRIBUTES, "group", *LANDMARK_COLUMNS,
)  # fmt: skip

# Chance of each expression (neutral is the most common) and, per expression, the chance that the
# lips part and by how much (face units).
_EXPRESSION_P = (0.28, 0.12, 0.12, 0.12, 0.12, 0.12, 0.12)
_MOUTH_OPEN: dict[str, tuple[float, float, float]] = {
    "neutral": (0.1, 1.5, 2.8),
    "happiness": (0.5, 3.0, 6.5),
    "sadness": (0.1, 1.5, 2.8),
    "surprise": (1.0, 6.5, 8.5),
    "fear": (0.9, 4.0, 6.5),
    "disgust": (0.3, 1.5, 3.0),
    "anger": (0.3, 2.5, 4.0),
}
assert set(_MOUTH_OPEN) == set(EXPRESSIONS), f"{sorted(_MOUTH_OPEN)} != {EXPRESSIONS}"
#: Label keys in CSV column order (landmarks last, flattened into lx1..ly5).
_LABEL_KEYS: tuple[str, ...] = ("identity", "expression", "age", *CELEBA_ATTRIBUTES, "group", "landmarks")
assert LABELS_CSV_COLUMNS == ("path", *_LABEL_KEYS[:-1], *LANDMARK_COLUMNS), "CSV columns and label keys drifted"


@dataclass(frozen=True)
class SampleImage:
    """One generated photo.

    Attributes:
        relpath: POSIX path inside the data set, ``images/<identity>/<nnnn>.jpg``.
        jpeg: the encoded photo.
        labels: ``identity``, ``expression``, ``age``, the 40 CelebA attributes (0/1), ``group`` and
            ``landmarks`` ([5, 2] list, image pixels), as in docs/ARCHITECTURE.md.
    """

    relpath: str
    jpeg: bytes
    labels: dict[str, Any]


def _hair_of_the_day(rng: np.random.Generator, ident: Identity) -> Identity:
    """The same person with their hair a little fuller or flatter and the parting moved (per photo)."""
    volume = ident.hair_volume * float(rng.uniform(0.75, 1.25))
    return replace(ident, hair_volume=volume, hairline=ident.hairline + float(rng.uniform(-2.0, 2.0)))


def _draw_look(rng: np.random.Generator, ident: Identity) -> Look:
    """Expression, age jitter, accessories (by the identity's habits) and clothes of one photo."""
    expression = int(rng.choice(len(EXPRESSIONS), p=_EXPRESSION_P))
    p_open, lo, hi = _MOUTH_OPEN[EXPRESSIONS[expression]]
    gap = float(rng.uniform(lo, hi)) if rng.random() < p_open else 0.0
    return Look(
        expression=expression,
        intensity=float(rng.uniform(0.7, 1.2)),
        mouth_gap=gap,
        age=round(ident.base_age + float(rng.uniform(-1.5, 1.5)), 1),
        glasses=bool(rng.random() < ident.glasses_p),
        hat=bool(rng.random() < ident.hat_p),
        earrings=bool(rng.random() < ident.earrings_p),
        necklace=bool(rng.random() < ident.necklace_p),
        necktie=bool(rng.random() < ident.necktie_p),
        shirt=tuple(float(c) for c in rng.uniform(20, 235, 3)),
        tie=tuple(float(c) for c in rng.uniform(20, 235, 3)),
    )


def _labels(ident: Identity, look: Look, blurry: bool, landmarks: np.ndarray) -> dict[str, Any]:
    """The label dict of one photo: identity-level traits plus what this photo shows."""
    attributes = {name: int(name in ident.traits) for name in CELEBA_ATTRIBUTES}
    per_photo = {
        "Eyeglasses": look.glasses,
        "Wearing_Hat": look.hat,
        "Wearing_Earrings": look.earrings,
        "Wearing_Necklace": look.necklace,
        "Wearing_Necktie": look.necktie,
        "Smiling": EXPRESSIONS[look.expression] == "happiness",
        "Mouth_Slightly_Open": look.mouth_gap > 0.0,
        "Blurry": blurry,
        "Young": look.age < AGE_LINES_FROM,
    }
    attributes.update({name: int(value) for name, value in per_photo.items()})
    return {
        "identity": ident.name,
        "expression": look.expression,
        "age": look.age,
        **attributes,
        "group": GROUPS[ident.group],
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in landmarks],
    }


def _check_args(
    identities: int, images_per_identity: int, seed: int, min_side: int, max_side: int, jpeg_quality: tuple[int, int]
) -> None:
    """Raise ValueError naming the first argument of :func:`generate_sample` that is out of range."""
    if identities < 1 or images_per_identity < 1:
        raise ValueError(
            f"identities ({identities}) and images_per_identity ({images_per_identity}) must both be >= 1"
        )
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}; use any non-negative integer")
    if not 128 <= min_side <= max_side:
        raise ValueError(f"need 128 <= min_side <= max_side, got min_side={min_side}, max_side={max_side}")
    lo, hi = jpeg_quality
    if not 1 <= lo <= hi <= 100:
        raise ValueError(f"jpeg_quality must be (lo, hi) with 1 <= lo <= hi <= 100, got {jpeg_quality}")


def generate_sample(
    identities: int,
    images_per_identity: int,
    *,
    seed: int,
    min_side: int = 160,
    max_side: int = 320,
    jpeg_quality: tuple[int, int] = (60, 95),
) -> Iterator[SampleImage]:
    """Generate the synthetic face data set, one photo at a time, identity by identity.

    Each photo is ``min_side``..``max_side`` pixels on each side (not necessarily square), shows
    one face on a cluttered background under random pose, light, blur and JPEG quality, and is
    labelled with exact landmarks.

    Args:
        identities: number of people (``id_0000`` ...).
        images_per_identity: photos per person.
        seed: data-set seed (>= 0).
        min_side, max_side: range of the photo's width and height, pixels (>= 128).
        jpeg_quality: inclusive range of the JPEG quality drawn per photo.

    Yields:
        :class:`SampleImage` in a fixed order: identity by identity, photo by photo.

    Raises:
        ValueError: an argument is out of range (the message names it).
    """
    _check_args(identities, images_per_identity, seed, min_side, max_side, jpeg_quality)
    for i in range(identities):
        identity = draw_identity(seed, i)
        for n in range(images_per_identity):
            rng = np.random.default_rng([seed, 1, i, n])
            height, width = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
            image = draw_background(rng, height, width)
            ident = _hair_of_the_day(rng, identity)
            look = _draw_look(rng, ident)
            landmarks = render_face(image, place_face(rng, head_box(ident), height, width), ident, look)
            camera = draw_camera(rng)
            image = apply_camera(rng, image, camera)
            quality = int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok, f"JPEG encoding failed for {identity.name} photo {n} ({width}x{height}, q={quality})"
            yield SampleImage(
                relpath=f"images/{ident.name}/{n:04d}.jpg",
                jpeg=encoded.tobytes(),
                labels=_labels(ident, look, camera.blurry, landmarks),
            )


def labels_csv(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> str:
    """Render ``labels.csv``: one header line, then one line per photo, columns :data:`LABELS_CSV_COLUMNS`.

    Args:
        rows: ``(relpath, labels)`` pairs, e.g. ``((im.relpath, im.labels) for im in images)``; the
            labels are those of :class:`SampleImage` (landmarks [5, 2]).

    Returns:
        CSV text with ``\\n`` line ends, rows in the given order.

    Raises:
        KeyError: a row lacks a label (the message names it and the row's path).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LABELS_CSV_COLUMNS)
    for relpath, labels in rows:
        missing = [key for key in _LABEL_KEYS if key not in labels]
        if missing:
            raise KeyError(
                f"labels of {relpath!r} lack {missing}; each photo needs identity, expression, age, "
                "the 40 CelebA attributes, group and landmarks (as generate_sample gives them)"
            )
        flat = [float(v) for point in labels["landmarks"] for v in point]
        if len(flat) != len(LANDMARK_COLUMNS):
            raise ValueError(f"landmarks of {relpath!r} hold {len(flat)} numbers; expected 5 points x 2 = 10")
        scalars = [labels[key] for key in _LABEL_KEYS[:-1]]
        writer.writerow([relpath, *scalars, *flat])
    return out.getvalue()
