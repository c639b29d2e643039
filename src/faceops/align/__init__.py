"""Face alignment: 5-point similarity warp onto the ArcFace template, face detection, batch runner.

Importing this package never imports torch or a detector backend's package; a backend is built the
first time a detection is asked for (see ``faceops.align.detector``).
"""

from faceops.align import mtcnn as _mtcnn  # noqa: F401  (registers the "mtcnn" backend)
from faceops.align.detector import (
    Detector,
    DetectorSpec,
    Face,
    detect_faces,
    get_detector,
    list_detectors,
    register_detector,
)
from faceops.align.runner import ALIGN_CODE_VERSION, AlignJob, AlignResult, align_many
from faceops.align.similarity import DegenerateLandmarksError, estimate_similarity
from faceops.align.warp import align_face, template_for_size

__all__ = [
    "ALIGN_CODE_VERSION",
    "AlignJob",
    "AlignResult",
    "DegenerateLandmarksError",
    "Detector",
    "DetectorSpec",
    "Face",
    "align_face",
    "align_many",
    "detect_faces",
    "estimate_similarity",
    "get_detector",
    "list_detectors",
    "register_detector",
    "template_for_size",
]
