"""The ``coco_keypoints`` layout: person keypoints from ``root/annotations.json`` (COCO format).

``root/annotations.json`` in COCO person-keypoints form, images at ``root/<file_name>``. One row per
image, labels ``identity`` (always ``None``: COCO has none), ``persons``: every non-crowd annotation as
``{"bbox": [x, y, w, h], "keypoints": [[x, y, v], ...]}``, largest bbox first; and ``keypoints``: the
[J, 3] keypoints of the largest person with at least one labelled point (``v > 0``), else ``None``. The
image's declared width/height must match the decoded, EXIF-transposed image (``bad_label`` otherwise:
its annotations would not fit the pixels).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from faceops.ingest.files import Refused
from faceops.ingest.layouts import Annotations, Labels, normalise_relpath, outside_root
from faceops.io.layout import COCO_ANNOTATIONS

__all__ = ["read_coco"]


def read_coco(root: Path, files: list[str]) -> Annotations:
    """Labels of the ``coco_keypoints`` layout (see the module docstring); ``files`` is not needed here."""
    json_path = root / COCO_ANNOTATIONS
    if not json_path.is_file():
        raise FileNotFoundError(f"{json_path} not found; the coco_keypoints layout needs it (COCO person keypoints)")
    try:
        coco = json.loads(json_path.read_text(encoding="utf-8"))
        images, annotations_in = coco["images"], coco.get("annotations", [])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{json_path}: not a COCO annotation file with an 'images' list ({err})") from err
    declared: dict[str, tuple[int, int]] = {}

    def size_matches(path: str, labels: Labels, width: int, height: int) -> str | None:
        if declared[path] == (width, height):
            return None
        want_w, want_h = declared[path]
        return f"{COCO_ANNOTATIONS} declares {want_w}x{want_h}, the decoded image is {width}x{height}"

    result = Annotations(origin=COCO_ANNOTATIONS, check_size=size_matches)
    path_of: dict[Any, str | None] = {}
    for i, image in enumerate(images):
        try:
            image_id, raw = image["id"], str(image["file_name"])
            size = (int(image["width"]), int(image["height"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{json_path}: images[{i}] needs id, file_name, width and height ({err!r})") from err
        path = normalise_relpath(raw)
        if image_id in path_of or (path or raw) in declared:
            raise ValueError(f"{json_path}: images[{i}] repeats id {image_id!r} or file_name {raw!r}; list each once")
        path_of[image_id] = path
        declared[path or raw] = size
        if path is None:
            result.refused[raw] = outside_root(raw, COCO_ANNOTATIONS)
    persons: dict[Any, list[dict[str, Any]]] = {image_id: [] for image_id in path_of}
    for j, annotation in enumerate(annotations_in):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if image_id not in persons:
            raise ValueError(f"{json_path}: annotations[{j}] refers to image_id {image_id!r}, which is not in 'images'")
        if not annotation.get("iscrowd", 0):
            persons[image_id].append(annotation)
    for image_id, path in path_of.items():
        if path is None:
            continue
        try:
            result.labels[path] = _coco_labels(persons[image_id])
        except (KeyError, TypeError, ValueError) as err:
            result.refused[path] = Refused("bad_label", f"{COCO_ANNOTATIONS} image id {image_id}: {err}")
    return result


def _coco_labels(annotations: list[dict[str, Any]]) -> Labels:
    """Labels of one COCO image from its non-crowd annotations (see the module docstring)."""
    persons = []
    for annotation in annotations:
        name = f"annotation {annotation.get('id')}"
        bbox = [float(v) for v in annotation["bbox"]]
        flat = annotation["keypoints"]
        if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0:
            raise ValueError(f"{name} has bbox {annotation['bbox']}; expected [x, y, w>=0, h>=0]")
        if not flat or len(flat) % 3:
            raise ValueError(f"{name} has {len(flat)} keypoint values; expected 3 per joint")
        keypoints = [[float(flat[k]), float(flat[k + 1]), int(flat[k + 2])] for k in range(0, len(flat), 3)]
        if any(v not in (0, 1, 2) for _, _, v in keypoints):
            raise ValueError(f"{name} has a visibility flag outside {{0, 1, 2}}")
        persons.append({"bbox": bbox, "keypoints": keypoints})
    persons.sort(key=lambda person: -person["bbox"][2] * person["bbox"][3])  # stable: file order breaks ties
    labelled = (person["keypoints"] for person in persons if any(v > 0 for _, _, v in person["keypoints"]))
    return {"identity": None, "keypoints": next(labelled, None), "persons": persons}
