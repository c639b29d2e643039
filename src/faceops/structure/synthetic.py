"""A generated data set of building-like planar graphs drawn as aerial-style images (the ``structure-sample`` stage).

Why synthetic: HEAT's outdoor building set (Chen, Qian and Furukawa, CVPR 2022, arXiv 2111.15143) cannot be
downloaded at run time, and the point of CornerFormer (Tian et al., arXiv 2304.07072) is the hard cases of
that set: corners close to each other and tiny edges. Every scene here holds several buildings and, on
purpose, those cases: buildings placed a few pixels apart (facing corners 3-5 px apart), outlines with a
step of 2-4 px (a tiny edge), and roofs split by an inner wall (corners of degree 3, two regions). Shapes
are rectilinear (rectangle, L, U, stepped, split) or general (irregular convex polygons), rectilinear ones
sometimes rotated; the image is ground texture, an optional road (straight edges without corners), a
shadow and a textured roof per building, sensor noise and blur. Corners lie on whole pixels, so the labels
are exact. The design of the scenes is ours; no data set or code was copied.

One scene depends only on ``(seed, index)``, so a larger data set starts with the same scenes.

Papers: CornerFormer: Hongbo Tian, Yulong Li, Linzhi Huang, Xu Ling, Yue Yang and Jiani Hu, "CornerFormer: Boosting
Corner Representation for Fine-Grained Structured Reconstruction", arXiv preprint 2304.07072, 2023; HEAT: Jiacheng
Chen, Yiming Qian and Yasutaka Furukawa, "HEAT: Holistic Edge Attention Transformer for Structured Reconstruction",
CVPR 2022, arXiv 2111.15143.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from faceops.io.heat_annotation import HEAT_ANNOTATIONS, HEAT_IMAGES, heat_annotation_bytes
from faceops.structure.graph import PlanarGraph, make_graph

__all__ = ["SHAPES", "Scene", "generate_scene", "generate_scenes", "scene_files"]

#: The building shapes, drawn with equal probability.
SHAPES = ("rectangle", "l_shape", "u_shape", "stepped", "split", "polygon")


@dataclass(frozen=True)
class Scene:
    """One generated image and its exact labels.

    Attributes:
        name: ``scene_NNNNNN`` (the index).
        image: ``[H, W, 3]`` uint8 RGB.
        graph: the buildings' corners and edges.
        regions: the roofs as corner cycles (a split roof is two regions); equal to
            ``planar_faces(graph)`` up to rotation and direction of each cycle.
    """

    name: str
    image: np.ndarray
    graph: PlanarGraph
    regions: list[list[int]]


@dataclass(frozen=True)
class _Building:
    points: np.ndarray  # [K, 2] integer (x, y), the outline in order
    walls: list[tuple[int, int]]  # extra edges between outline points (an inner wall)
    parts: list[list[int]]  # regions as outline-point cycles


def _outline(rng: np.random.Generator, shape: str, w: int, h: int, step: int) -> _Building:
    """A building of ``shape`` in a ``w`` x ``h`` box at the origin (before rotation)."""
    if shape == "l_shape":
        a, b = int(rng.integers(w // 3, 2 * w // 3 + 1)), int(rng.integers(h // 3, 2 * h // 3 + 1))
        pts = [(0, 0), (a, 0), (a, b), (w, b), (w, h), (0, h)]
    elif shape == "u_shape":
        a, b = w // 3, int(rng.integers(h // 3, 2 * h // 3 + 1))
        pts = [(0, 0), (a, 0), (a, b), (w - a, b), (w - a, 0), (w, 0), (w, h), (0, h)]
    elif shape == "stepped":  # a step of `step` px along the top: a tiny edge with two adjacent corners
        a = int(rng.integers(w // 3, 2 * w // 3 + 1))
        pts = [(0, 0), (a, 0), (a, step), (w, step), (w, h), (0, h)]
    elif shape == "split":  # an inner wall from top to bottom: two regions, two corners of degree 3
        a = int(rng.integers(w // 3, 2 * w // 3 + 1))
        pts = [(0, 0), (a, 0), (w, 0), (w, h), (a, h), (0, h)]
        return _Building(np.array(pts, np.float64), [(1, 4)], [[0, 1, 4, 5], [1, 2, 3, 4]])
    elif shape == "polygon":  # irregular convex polygon on an ellipse
        n = int(rng.integers(4, 7))
        angles = (np.arange(n) + rng.uniform(0.15, 0.85, n)) * 2 * math.pi / n
        pts = [(w / 2 * (1 + math.cos(t)), h / 2 * (1 + math.sin(t))) for t in angles]
    else:
        pts = [(0, 0), (w, 0), (w, h), (0, h)]
    return _Building(np.array(pts, np.float64), [], [list(range(len(pts)))])


def _is_clean(points: np.ndarray, min_gap: float) -> bool:
    """Outline points pairwise >= ``min_gap`` apart and the outline simple with a consistent turn."""
    d = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1)) + np.eye(len(points)) * 1e9
    if d.min() < min_gap:
        return False
    area = 0.5 * np.sum(points[:, 0] * np.roll(points[:, 1], -1) - np.roll(points[:, 0], -1) * points[:, 1])
    return abs(area) > 4.0 and _simple(points)


def _simple(points: np.ndarray) -> bool:
    """No two non-adjacent outline segments cross or touch."""
    n = len(points)
    segs = [(points[i], points[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue
            if _segments_meet(*segs[i], *segs[j]):
                return False
    return True


def _segments_meet(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    d1, d2, d3, d4 = cross(q1, q2, p1), cross(q1, q2, p2), cross(p1, p2, q1), cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and 0 not in (d1, d2, d3, d4):
        return True
    lo, hi = np.minimum(p1, p2) - 1e-9, np.maximum(p1, p2) + 1e-9
    touching = [q for q, d in ((q1, d3), (q2, d4)) if d == 0 and (lo <= q).all() and (q <= hi).all()]
    return bool(touching)


def _draw_building(rng: np.random.Generator, size: int) -> _Building | None:
    """A random building shape, maybe rotated, with integer corners; None when rounding spoilt it."""
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    w, h = (int(v) for v in rng.integers(round(0.16 * size), round(0.36 * size) + 1, size=2))
    step = max(2, round(rng.uniform(2, 4) * size / 64))
    building = _outline(rng, shape, w, h, step)
    points = building.points - building.points.mean(0)
    if shape != "polygon" and rng.random() < 0.4:
        t = rng.uniform(-math.pi / 4, math.pi / 4)
        points = points @ np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    points = np.round(points - points.min(0))
    if not _is_clean(points, 2.0):
        return None
    return _Building(points, building.walls, building.parts)


def _place(rng: np.random.Generator, size: int, extent: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray | None:
    """Top-left offset for a box of ``extent`` (w, h) clear of ``boxes`` by >= 2 px, 3 px from the border.

    Half the time the box is put 2-4 px beside a box already placed (adjacent buildings on purpose).
    """
    margin = 3
    for attempt in range(40):
        if boxes and attempt < 10 and rng.random() < 0.5:
            other = boxes[int(rng.integers(len(boxes)))]
            gap = int(rng.integers(2, 5))
            side = int(rng.integers(4))
            jitter = rng.integers(-int(extent.max()) // 2, int(extent.max()) // 2 + 1)
            offsets = {0: (other[2] + gap, other[1] + jitter), 1: (other[0] - gap - extent[0], other[1] + jitter),
                       2: (other[0] + jitter, other[3] + gap),
                       3: (other[0] + jitter, other[1] - gap - extent[1])}  # fmt: skip
            offset = np.array(offsets[side], np.float64)
        else:
            offset = rng.integers(margin, np.maximum(margin + 1, size - margin - extent)).astype(np.float64)
        box = np.array([offset[0], offset[1], offset[0] + extent[0], offset[1] + extent[1]])
        inside = box[0] >= margin and box[1] >= margin and box[2] <= size - 1 - margin and box[3] <= size - 1 - margin
        clear = all(box[0] > b[2] + 1 or box[2] < b[0] - 1 or box[1] > b[3] + 1 or box[3] < b[1] - 1 for b in boxes)
        if inside and clear:
            return offset
    return None


def _ground(rng: np.random.Generator, size: int) -> np.ndarray:
    """Ground texture: a base colour, low-frequency patches and fine grain (float32 RGB)."""
    base = rng.uniform([60, 70, 40], [140, 150, 110])
    coarse = cv2.resize(rng.normal(0, 18, (6, 6, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 6, (size, size, 3)).astype(np.float32)
    return (base.astype(np.float32) + coarse + grain).astype(np.float32)


def _road(rng: np.random.Generator, image: np.ndarray) -> None:
    """A straight grey road across the image: long edges that have no corners (a distractor)."""
    size = image.shape[0]
    y0, y1 = rng.uniform(0, size, 2)
    width = int(rng.integers(max(2, size // 16), max(3, size // 8)))
    color = tuple(float(v) for v in rng.uniform(90, 150) + rng.normal(0, 5, 3))
    cv2.line(image, (-size, int(y0)), (2 * size, int(y1)), color, width)


def generate_scene(index: int, *, seed: int, size: int = 64, buildings: tuple[int, int] = (2, 4)) -> Scene:
    """Scene ``index`` of the data set of ``seed`` (see the module docstring).

    Args:
        index: scene number (>= 0); the scene depends on ``(seed, index)`` only.
        seed: data-set seed (>= 0).
        size: image side in pixels (square, >= 32).
        buildings: inclusive range of buildings drawn; fewer when they no longer fit.

    Raises:
        ValueError: an argument out of range.
    """
    if size < 32 or index < 0 or seed < 0 or not 1 <= buildings[0] <= buildings[1]:
        raise ValueError(f"need size >= 32, index >= 0, seed >= 0, 1 <= buildings[0] <= buildings[1]; got "
                         f"size={size}, index={index}, seed={seed}, buildings={buildings}")  # fmt: skip
    rng = np.random.default_rng([seed, 19, index])
    image = _ground(rng, size)
    if rng.random() < 0.5:
        _road(rng, image)
    shadow = rng.uniform(1.0, 2.5, 2) * rng.choice([-1, 1], 2)
    corners: list[np.ndarray] = []
    edges: list[tuple[int, int]] = []
    regions: list[list[int]] = []
    boxes: list[np.ndarray] = []
    placed: list[tuple[np.ndarray, _Building]] = []
    for _ in range(int(rng.integers(buildings[0], buildings[1] + 1))):
        building = next((b for b in (_draw_building(rng, size) for _ in range(10)) if b is not None), None)
        offset = None if building is None else _place(rng, size, building.points.max(0).astype(np.int64), boxes)
        if building is None or offset is None:
            continue
        points = building.points + offset
        boxes.append(np.concatenate([points.min(0), points.max(0)]))
        placed.append((points, building))
        first, n = len(corners), len(points)
        corners.extend(points)
        edges += [(first + k, first + (k + 1) % n) for k in range(n)] + [
            (first + a, first + b) for a, b in building.walls
        ]
        regions += [[first + k for k in part] for part in building.parts]
    for points, _ in placed:  # every shadow before any roof: a shadow never covers a neighbour's roof
        cv2.fillPoly(
            image, [np.round(points + shadow).astype(np.int32)], tuple(float(v) for v in rng.uniform(15, 40, 3))
        )
    for points, building in placed:
        _paint_roof(rng, image, points, building)
    image = _camera(rng, image)
    return Scene(f"scene_{index:06d}", image, make_graph(np.array(corners).reshape(-1, 2), edges), regions)


def _paint_roof(rng: np.random.Generator, image: np.ndarray, points: np.ndarray, building: _Building) -> None:
    """Each roof part in its own shade of the building's colour, with a little texture."""
    roof = rng.uniform([90, 60, 50], [230, 200, 190])
    for part in building.parts:
        shade = roof * rng.uniform(0.7, 1.15)
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [points[part].astype(np.int32)], 1)
        texture = rng.normal(0, 5, image.shape).astype(np.float32)
        image[mask > 0] = (shade.astype(np.float32) + texture)[mask > 0]


def _camera(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Blur, contrast and sensor noise; uint8 RGB."""
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.4, 0.9)))
    image = (image - 128.0) * rng.uniform(0.85, 1.15) + 128.0 + rng.normal(0, rng.uniform(2, 8), image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def generate_scenes(count: int, *, seed: int, size: int = 64, buildings: tuple[int, int] = (2, 4)) -> Iterator[Scene]:
    """Scenes ``0 .. count - 1`` of the data set of ``seed`` (:func:`generate_scene`)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    for index in range(count):
        yield generate_scene(index, seed=seed, size=size, buildings=buildings)


def scene_files(scene: Scene, *, jpeg_quality: int = 95) -> dict[str, bytes]:
    """The scene as HEAT's layout holds it: ``rgb/<name>.jpg`` and ``annot/<name>.npy`` (relpath -> bytes)."""
    ok, encoded = cv2.imencode(".jpg", scene.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise ValueError(f"{scene.name}: JPEG encoding failed (quality {jpeg_quality})")
    return {
        f"{HEAT_IMAGES}/{scene.name}.jpg": encoded.tobytes(),
        f"{HEAT_ANNOTATIONS}/{scene.name}.npy": heat_annotation_bytes(scene.graph.corners, scene.graph.edges),
    }
