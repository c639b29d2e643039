"""The image material of Gbench-mini: aligned synthetic faces, and the shifts applied to them.

Faces come from the seeded generator (:func:`faceops.sample.generate_sample`), aligned to the ArcFace
template from their exact landmarks (:func:`faceops.align.warp.align_face`), so a pool is reproducible
from its arguments. Shifts with a severity knob in (0, 1] (:data:`CORRUPTIONS`): Gaussian ``blur`` (sigma
up to a sixth of the side), ``low_resolution`` (down to 1/8 of the side, then back up), Gaussian ``noise``
(sigma up to 80 grey levels), ``occlusion`` (a random flat rectangle over up to 60% of the face) and
``other_domain`` (a blend towards a generated non-face scene; 1 = the scene alone). Shifted identities and
an unseen skin-tone group are pools of other people, chosen by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from faceops.align.warp import align_face
from faceops.sample import generate_sample
from faceops.sample.scene import draw_background

__all__ = ["CORRUPTIONS", "FacePool", "corrupt", "sample_faces"]


@dataclass(frozen=True)
class FacePool:
    """Aligned faces with their identity index and skin-tone group.

    Attributes:
        images: [N, S, S, 3] uint8 RGB.
        identity: [N] int, the generator's identity index.
        group: [N] str, ``faceops.sample.identity.GROUPS`` names.
        photo: [N] int, the photo's index within its identity.
    """

    images: np.ndarray
    identity: np.ndarray
    group: np.ndarray
    photo: np.ndarray

    def take(self, mask: np.ndarray) -> FacePool:
        """The faces where ``mask`` [N] is True (or at the given indices), in order."""
        return FacePool(self.images[mask], self.identity[mask], self.group[mask], self.photo[mask])


def sample_faces(identities: int, per_identity: int, *, seed: int, size: int = 32) -> FacePool:
    """``per_identity`` aligned photos of each of the generator's first ``identities`` people.

    Raises:
        ValueError: an argument is out of range (from the generator, or ``size`` < 8).
    """
    images, ident, group, photo = [], [], [], []
    for sample in generate_sample(identities, per_identity, seed=seed, min_side=128, max_side=160):
        bgr = cv2.imdecode(np.frombuffer(sample.jpeg, np.uint8), cv2.IMREAD_COLOR)
        images.append(align_face(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.asarray(sample.labels["landmarks"]), size))
        ident.append(int(sample.labels["identity"].rsplit("_", 1)[1]))
        group.append(sample.labels["group"])
        photo.append(int(sample.relpath.rsplit("/", 1)[1].split(".")[0]))
    return FacePool(np.stack(images), np.array(ident), np.array(group), np.array(photo))


def _blur(x: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    sigma = severity * x.shape[1] / 6.0
    return np.stack([cv2.GaussianBlur(im, (0, 0), sigma) for im in x])


def _low_resolution(x: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    side = x.shape[1]
    small = max(2, round(side / (1.0 + 7.0 * severity)))
    return np.stack([cv2.resize(cv2.resize(im, (small, small), interpolation=cv2.INTER_AREA), (side, side),
                                interpolation=cv2.INTER_LINEAR) for im in x])  # fmt: skip


def _noise(x: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + rng.normal(0.0, 80.0 * severity, x.shape), 0, 255).astype(np.uint8)


def _occlusion(x: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    out, side = x.copy(), x.shape[1]
    for im in out:
        area = 0.6 * severity * side * side
        aspect = rng.uniform(0.5, 2.0)
        h = int(np.clip(round(np.sqrt(area * aspect)), 1, side))
        w = int(np.clip(round(area / h), 1, side))
        top, left = int(rng.integers(0, side - h + 1)), int(rng.integers(0, side - w + 1))
        im[top : top + h, left : left + w] = rng.integers(0, 256, 3)
    return out


def _other_domain(x: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    scenes = np.stack([cv2.cvtColor(draw_background(rng, x.shape[1], x.shape[2]), cv2.COLOR_BGR2RGB) for _ in x])
    return np.clip((1.0 - severity) * x + severity * scenes.astype(np.float64) + 0.5, 0, 255).astype(np.uint8)


CORRUPTIONS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "blur": _blur, "low_resolution": _low_resolution, "noise": _noise, "occlusion": _occlusion,
    "other_domain": _other_domain,
}  # fmt: skip


def corrupt(images: np.ndarray, kind: str, severity: float, *, seed: int) -> np.ndarray:
    """Shift uint8 faces [N, S, S, 3] by ``kind`` at ``severity`` in (0, 1]; a new array, same shape.

    Raises:
        ValueError: unknown kind, severity out of range, or images not [N, S, S, 3] uint8.
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown shift {kind!r}; expected one of {sorted(CORRUPTIONS)}")
    if not 0.0 < severity <= 1.0:
        raise ValueError(f"severity must be in (0, 1], got {severity}")
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be [N, S, S, 3] uint8, got {images.shape} {images.dtype}")
    return CORRUPTIONS[kind](images, severity, np.random.default_rng([seed, sorted(CORRUPTIONS).index(kind)]))
