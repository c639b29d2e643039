"""Face detectors behind one interface, chosen by name from a small registry.

Why a registry: params name the detector (``align.detector``), the cache key needs a version string
for the detector's weights, and worker processes must rebuild the same detector. A backend is
registered with a factory (called lazily, once per process) and a ``version`` callable (cheap, does
not build the network), so ``import faceops.align`` never imports torch or the backend's package.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Face",
    "Detector",
    "DetectorSpec",
    "register_detector",
    "detector_spec",
    "list_detectors",
    "get_detector",
    "detect_faces",
]


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    ``eq=False``: faces hold arrays, so identity equality/hash is the only meaningful default.

    Attributes:
        box: [4] float64 x1, y1, x2, y2 in pixels.
        landmarks: [5, 2] float64 (x, y), order ``faceops.labels.LANDMARK_NAMES`` (image left/right as seen).
        score: detector confidence in [0, 1].
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    def __post_init__(self) -> None:
        box = np.array(self.box, dtype=np.float64).reshape(-1)
        landmarks = np.array(self.landmarks, dtype=np.float64)
        if box.shape != (4,) or landmarks.shape != (5, 2):
            raise ValueError(f"Face needs box [4] and landmarks [5, 2], got {box.shape} and {landmarks.shape}")
        box.setflags(write=False)
        landmarks.setflags(write=False)
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "landmarks", landmarks)
        object.__setattr__(self, "score", float(self.score))

    @property
    def area(self) -> float:
        """Box area in square pixels (0 for an inverted box)."""
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@runtime_checkable
class Detector(Protocol):
    """What every backend provides."""

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """All faces in an [H, W, 3] uint8 RGB image, in any order, unfiltered."""
        ...


@dataclass(frozen=True)
class DetectorSpec:
    """A registered backend.

    Attributes:
        name: registry name (the ``align.detector`` param).
        factory: builds the detector; called at most once per process. Must be a module-level
            callable so worker processes can receive the spec.
        version: returns a string naming the code + weights behind the detector; it enters the
            align cache key, so new weights invalidate cached detections. Must be cheap.
    """

    name: str
    factory: Callable[[], Detector]
    version: Callable[[], str]


_REGISTRY: dict[str, DetectorSpec] = {}
_BUILT: dict[str, Detector] = {}


def register_detector(spec: DetectorSpec) -> None:
    """Add (or replace, with a warning) a backend; an already built instance of that name is dropped."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        warnings.warn(f"detector {spec.name!r} registered twice; the later registration wins", stacklevel=2)
    _REGISTRY[spec.name] = spec
    _BUILT.pop(spec.name, None)


def list_detectors() -> list[str]:
    """Registered detector names, sorted."""
    return sorted(_REGISTRY)


def detector_spec(name: str) -> DetectorSpec:
    """The registered spec of ``name``.

    Raises:
        ValueError: unknown name; the message lists the closest registered names.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.0)
        raise ValueError(f"unknown detector {name!r}; registered: {list_detectors()} (closest: {close})") from None


def get_detector(name: str) -> Detector:
    """The process-wide instance of detector ``name``, built on first use."""
    if name not in _BUILT:
        _BUILT[name] = detector_spec(name).factory()
    return _BUILT[name]


def detect_faces(image_rgb: np.ndarray, *, detector: str = "mtcnn", min_score: float = 0.0) -> list[Face]:
    """Detect faces, keep those scoring at least ``min_score``, largest box first.

    Args:
        image_rgb: [H, W, 3] uint8 RGB image.
        detector: registered detector name.
        min_score: minimum detector score to keep a face, in [0, 1].

    Returns:
        Faces sorted by box area, largest first (ties keep the backend's order).
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            f"image_rgb must be [H, W, 3] uint8, got shape {image_rgb.shape} dtype {image_rgb.dtype}"
        )
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be in [0, 1], got {min_score}")
    faces = [f for f in get_detector(detector).detect(image_rgb) if f.score >= min_score]
    return sorted(faces, key=lambda f: -f.area)
