"""MTCNN face detector backend (Zhang et al., "Joint Face Detection and Alignment using Multitask
Cascaded Convolutional Networks", IEEE SPL 2016, https://arxiv.org/abs/1604.02878).

Uses the P/R/O-net weights that ship inside the facenet-pytorch 2.6.0 wheel (MIT licence), loaded by
facenet-pytorch itself from its package folder; nothing is downloaded. facenet-pytorch pins an old
torch, so it is installed with ``--no-deps`` and is optional: importing this module does not import
it, and asking for the detector without it raises an ImportError that says how to install it.

MTCNN's five points are (left eye, right eye, nose, mouth left, mouth right) in image coordinates,
i.e. already the order of ``faceops.labels.LANDMARK_NAMES`` (checked on a real photo: index 0 has the
smaller x). facenet-pytorch reports 1-based pixel coordinates (inherited from the MATLAB original);
they are shifted to faceops' 0-based convention (pixel centres at integers, first pixel at 0). On
dlib's annotated photos this removes a mean offset of about +1 px in x and y (bench/detector_accuracy.py).
"""

from __future__ import annotations

import importlib.metadata

import numpy as np

from faceops.align.detector import DetectorSpec, Face, register_detector

__all__ = ["MTCNNDetector", "mtcnn_version"]

_PACKAGE = "facenet-pytorch"
_INSTALL_HINT = (
    f"the 'mtcnn' face detector needs the package {_PACKAGE}, which is not installed; install it with "
    f"`pip install --no-deps {_PACKAGE}==2.6.0` (its MTCNN weights ship inside the wheel; --no-deps keeps "
    "your torch), or pass landmarks and set align.use_given_landmarks: true"
)

# facenet-pytorch's defaults, written out because they enter the cache key through mtcnn_version().
_MIN_FACE_SIZE = 20
_THRESHOLDS = (0.6, 0.7, 0.7)
_FACTOR = 0.709
# Offset from facenet's 1-based output coordinates to our 0-based ones (see MTCNNDetector.detect).
_ONE_BASED = 1.0


def mtcnn_version() -> str:
    """Code + weights + settings of this backend, for the align cache key; does not import torch."""
    try:
        package_version = importlib.metadata.version(_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(_INSTALL_HINT) from None
    thresholds = ",".join(str(t) for t in _THRESHOLDS)
    return (
        f"{_PACKAGE}=={package_version};min_face={_MIN_FACE_SIZE};thresholds={thresholds};factor={_FACTOR};"
        f"offset=-{_ONE_BASED}"
    )


class MTCNNDetector:
    """MTCNN on CPU (or ``device``), returning every face with its 5 landmarks."""

    def __init__(self, device: str = "cpu") -> None:
        """Build the three networks from the weights inside the facenet-pytorch wheel.

        Args:
            device: torch device string; CPU by default so results do not depend on a GPU.

        Raises:
            ImportError: facenet-pytorch is not installed (the message gives the install command).
        """
        try:
            from facenet_pytorch import MTCNN
        except ModuleNotFoundError as err:
            if err.name != "facenet_pytorch":
                raise
            raise ImportError(_INSTALL_HINT) from None
        self._mtcnn = MTCNN(
            min_face_size=_MIN_FACE_SIZE,
            thresholds=list(_THRESHOLDS),
            factor=_FACTOR,
            keep_all=True,
            post_process=False,
            device=device,
        )
        self._mtcnn.eval()

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """All faces in an [H, W, 3] uint8 RGB image (facenet's order, unfiltered)."""
        boxes, scores, points = self._mtcnn.detect(np.ascontiguousarray(image_rgb), landmarks=True)
        if boxes is None:
            return []
        # facenet returns dtype=object arrays under numpy 2: cast before use.
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        # facenet keeps the original MATLAB MTCNN's 1-based pixel coordinates (its crops index
        # imgs[y - 1 : ey], and points are box + w * p - 1 as in the MATLAB code); ours are 0-based.
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) - _ONE_BASED
        points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2) - _ONE_BASED
        return [Face(box=b, landmarks=p, score=s) for b, p, s in zip(boxes, points, scores, strict=True)]


register_detector(DetectorSpec(name="mtcnn", factory=MTCNNDetector, version=mtcnn_version))
