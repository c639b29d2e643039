"""Procedural synthetic faces: a seeded, labelled face data set drawn with OpenCV.

Why: the pipeline, its tests and its benchmarks need faces with known identity, expression, age,
attributes, skin-tone group and exact landmarks, without downloading anything (style guide C19).
Each identity has fixed geometry and appearance; each photo varies expression, accessories, pose,
light, blur and JPEG quality.

Example:
    >>> images = list(generate_sample(3, 2, seed=0))
    >>> text = labels_csv((im.relpath, im.labels) for im in images)
"""

from faceops.sample.generate import LABELS_CSV_COLUMNS, SampleImage, generate_sample, labels_csv

__all__ = ["SampleImage", "generate_sample", "labels_csv", "LABELS_CSV_COLUMNS"]
