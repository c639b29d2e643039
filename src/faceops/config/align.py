"""Face alignment (section ``align``, stage ``align``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from faceops.config.runner import RunnerChoice

__all__ = ["AlignParams"]


class AlignParams(RunnerChoice):
    """Face alignment (stage ``align``).

    Landmarks come from, in order: the source's labels (``use_given_landmarks``), the ``keypoints``
    stage's pseudo-landmarks when their mean confidence reaches ``pseudo_min_confidence``
    (``use_pseudo_landmarks``), else the detector.

    ``runner`` (see ``RunnerChoice``) decides who computes the images missing from the per-image
    cache, never what comes out: ``processes`` uses ``workers`` processes; ``dask`` sends chunks of
    images to the cluster (a temporary local one has ``workers`` processes).
    """

    detector: Literal["mtcnn"] = "mtcnn"
    min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9
    multiple_faces: Literal["largest", "quarantine"] = "largest"
    use_given_landmarks: bool = True
    use_pseudo_landmarks: bool = True
    pseudo_min_confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    jpeg_quality: Annotated[int, Field(ge=50, le=100)] = 95
