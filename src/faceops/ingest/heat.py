"""The ``heat_planar`` layout: HEAT's planar-graph data sets (images + one corner/edge annotation per image).

HEAT (Chen, Qian and Furukawa, CVPR 2022, arXiv 2111.15143) ships its outdoor building set as
``rgb/<name>.jpg`` and ``annot/<name>.npy`` (``faceops.io.heat_annotation``: corners and edges, read without
running pickle code), with ``train_list.txt`` and ``valid_list.txt`` naming the images of each split (the
first 50 of the validation list are its validation images, the rest its test images). One row per image
under ``rgb/``, labels ``identity`` (``None``), ``corners`` [[x, y], ...], ``edges`` [[i, j], ...] and
``split`` (``train``/``val``/``test`` from the lists, ``None`` for an image in neither). An image without its
annotation is quarantined as ``unlabeled``; an annotation that cannot be read safely, or whose corners lie
outside the decoded image, as ``bad_label``; files outside ``rgb/`` as ``unlabeled``. The ``structure-shard``
stage reads the generated data set through this layout too (``faceops.structure.synthetic`` writes it).

Paper: Jiacheng Chen, Yiming Qian and Yasutaka Furukawa, "HEAT: Holistic Edge Attention Transformer for Structured
Reconstruction", CVPR 2022, arXiv 2111.15143.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from faceops.ingest.files import Refused
from faceops.ingest.layouts import Annotations, Labels
from faceops.io.heat_annotation import HEAT_ANNOTATIONS, HEAT_IMAGES, HeatAnnotationError, read_heat_annotation

__all__ = ["HEAT_LISTS", "HEAT_OWN_FILES", "read_heat"]

#: HEAT's split lists: file -> split of its names (``valid_list.txt``: the first 50 are ``val``, then ``test``).
HEAT_LISTS = {"train_list.txt": "train", "valid_list.txt": "val"}
#: What the layout owns besides its images (not scanned as images).
HEAT_OWN_FILES = (HEAT_ANNOTATIONS, *HEAT_LISTS)
_HEAT_VALIDATION_IMAGES = 50
#: Annotation files larger than this are refused unread.
_MAX_ANNOTATION_BYTES = 16 << 20


def _splits(root: Path) -> dict[str, str]:
    """Image name -> split from HEAT's list files (absent lists give nothing)."""
    found: dict[str, str] = {}
    for filename, split in HEAT_LISTS.items():
        path = root / filename
        names = (
            [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if path.is_file()
            else []
        )
        for k, name in enumerate(names):
            found.setdefault(name, "test" if split == "val" and k >= _HEAT_VALIDATION_IMAGES else split)
    return found


def _labels(root: Path, stem: str, splits: dict[str, str]) -> Labels | Refused:
    path = root / HEAT_ANNOTATIONS / f"{stem}.npy"
    if not path.is_file():
        return Refused("unlabeled", f"no annotation {HEAT_ANNOTATIONS}/{stem}.npy for this image")
    if path.stat().st_size > _MAX_ANNOTATION_BYTES:
        return Refused("bad_label", f"{HEAT_ANNOTATIONS}/{stem}.npy is over {_MAX_ANNOTATION_BYTES} bytes")
    try:
        corners, edges = read_heat_annotation(path.read_bytes())
    except HeatAnnotationError as err:
        return Refused("bad_label", f"{HEAT_ANNOTATIONS}/{stem}.npy: {err}")
    return {"identity": None, "corners": corners.tolist(), "edges": edges.tolist(), "split": splits.get(stem)}


def _corners_inside(path: str, labels: Labels, width: int, height: int) -> str | None:
    corners = np.asarray(labels["corners"], np.float64).reshape(-1, 2)
    outside = (corners < -0.5).any(1) | (corners[:, 0] > width - 0.5) | (corners[:, 1] > height - 0.5)
    if outside.any():
        return f"corner {corners[outside][0].tolist()} lies outside the {width}x{height} image"
    return None


def read_heat(root: Path, files: list[str]) -> Annotations:
    """Labels of the ``heat_planar`` layout (see the module docstring)."""
    annotations = Annotations(
        origin=f"the heat_planar layout ({HEAT_ANNOTATIONS}/<name>.npy)", check_size=_corners_inside
    )
    splits = _splits(root)
    for path in files:
        relpath = PurePosixPath(path)
        if len(relpath.parts) != 2 or relpath.parts[0] != HEAT_IMAGES:
            annotations.refused[path] = Refused(
                "unlabeled", f"heat_planar holds images at {HEAT_IMAGES}/<name>.<ext> only"
            )
            continue
        labels = _labels(root, relpath.stem, splits)
        if isinstance(labels, Refused):
            annotations.refused[path] = labels
        else:
            annotations.labels[path] = labels
    return annotations
