"""Planar graphs: the labels and the predictions of structured reconstruction (corners + edges, regions).

A :class:`PlanarGraph` holds corners ``[N, 2]`` as (x, y) pixel coordinates and undirected edges ``[E, 2]``
as corner-index pairs ``i < j``, each pair once, sorted. That is what HEAT's annotations hold (Chen, Qian and
Furukawa, "HEAT: Holistic Edge Attention Transformer for Structured Reconstruction", CVPR 2022, arXiv
2111.15143) and what CornerFormer (Tian et al., arXiv 2304.07072) predicts. Regions are not stored: they
follow from the corners and edges, either as the bounded faces of the straight-line embedding
(:func:`planar_faces`, the region labels of the shards) or rasterised the way HEAT's evaluation does
(:func:`region_masks`: the edges drawn 1 px wide, the connected parts of what is left, without the
background and without parts under 20 px).

Papers: CornerFormer: Hongbo Tian, Yulong Li, Linzhi Huang, Xu Ling, Yue Yang and Jiani Hu, "CornerFormer: Boosting
Corner Representation for Fine-Grained Structured Reconstruction", arXiv preprint 2304.07072, 2023; HEAT: Jiacheng
Chen, Yiming Qian and Yasutaka Furukawa, "HEAT: Holistic Edge Attention Transformer for Structured Reconstruction",
CVPR 2022, arXiv 2111.15143.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "PlanarGraph",
    "cycle_key",
    "graph_from_labels",
    "graph_to_labels",
    "make_graph",
    "planar_faces",
    "region_masks",
]


@dataclass(frozen=True)
class PlanarGraph:
    """Corners and edges of one image (build it with :func:`make_graph`, which checks and sorts).

    Attributes:
        corners: ``[N, 2]`` float64 (x, y) in pixels.
        edges: ``[E, 2]`` int64 corner indices, ``i < j`` in each row, rows unique and sorted.
    """

    corners: np.ndarray
    edges: np.ndarray

    def degrees(self) -> np.ndarray:
        """``[N]`` number of edges at each corner."""
        return np.bincount(self.edges.reshape(-1), minlength=len(self.corners))

    def neighbours(self) -> list[list[int]]:
        """Per corner, its neighbours' indices in edge order."""
        out: list[list[int]] = [[] for _ in range(len(self.corners))]
        for i, j in self.edges.tolist():
            out[i].append(j)
            out[j].append(i)
        return out


def _pairs_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float ``[K, 2]`` array (``[0, 2]`` when empty); ValueError naming ``name`` otherwise."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a list of [a, b] number pairs ({err})") from None
    if array.size == 0:
        return np.zeros((0, 2))
    if array.ndim != 2 or array.shape[1] != 2 or not np.isfinite(array).all():
        raise ValueError(f"{name} must be [K, 2] finite numbers, got shape {array.shape}")
    return array


def make_graph(corners: Any, edges: Any) -> PlanarGraph:
    """A checked :class:`PlanarGraph`: edges oriented ``i < j``, duplicates (either direction) merged, sorted.

    Raises:
        ValueError: corners not ``[N, 2]`` finite numbers, edges not ``[E, 2]`` integers, an edge index out
            of range or a self-loop (the message names the first offender).
    """
    points = _pairs_array(corners, "corners")
    pairs = _pairs_array(edges, "edges")
    if not np.equal(np.round(pairs), pairs).all():
        raise ValueError("edges must hold integer corner indices")
    pairs = pairs.astype(np.int64)
    bad = np.flatnonzero((pairs < 0).any(1) | (pairs >= len(points)).any(1))
    if len(bad):
        raise ValueError(f"edge {pairs[bad[0]].tolist()} names a corner outside 0..{len(points) - 1}")
    loops = np.flatnonzero(pairs[:, 0] == pairs[:, 1])
    if len(loops):
        raise ValueError(f"edge {pairs[loops[0]].tolist()} joins corner {pairs[loops[0], 0]} to itself")
    pairs = np.unique(np.sort(pairs, axis=1), axis=0) if len(pairs) else pairs
    return PlanarGraph(points, pairs.reshape(-1, 2))


def graph_to_labels(graph: PlanarGraph) -> dict[str, list]:
    """``{"corners": [[x, y], ...], "edges": [[i, j], ...], "regions": [[i, j, k, ...], ...]}`` (JSON types)."""
    return {"corners": graph.corners.tolist(), "edges": graph.edges.tolist(), "regions": planar_faces(graph)}


def graph_from_labels(labels: Mapping[str, Any]) -> PlanarGraph:
    """The graph of a shard sample's labels (``corners``, ``edges``; ``regions`` follow from them).

    Raises:
        KeyError: ``corners`` or ``edges`` is missing.
        ValueError: they do not form a graph (:func:`make_graph`).
    """
    return make_graph(labels["corners"], labels["edges"])


def planar_faces(graph: PlanarGraph) -> list[list[int]]:
    """The bounded faces of the straight-line drawing of ``graph`` as corner cycles.

    Each half-edge ``u -> v`` is followed by ``v -> w`` where ``w`` is the neighbour of ``v`` that comes
    just before ``u`` in angular order around ``v``; every half-edge lies on exactly one traced cycle. The
    outer face of each connected part has the opposite orientation (negative signed area) and trees
    enclose nothing (area 0), so only cycles of positive area are kept. Edges must not cross.

    Returns:
        Cycles of corner indices, each starting at its smallest index, sorted.
    """
    xy = graph.corners
    around = [sorted(ns, key=lambda n, c=c: math.atan2(xy[n, 1] - xy[c, 1], xy[n, 0] - xy[c, 0]))
              for c, ns in enumerate(graph.neighbours())]  # fmt: skip
    position = {(c, n): k for c, ns in enumerate(around) for k, n in enumerate(ns)}
    unused = {(int(i), int(j)) for i, j in graph.edges} | {(int(j), int(i)) for i, j in graph.edges}
    faces = []
    for start in sorted(unused):
        if start not in unused:
            continue
        cycle, (u, v) = [], start
        while (u, v) in unused:
            unused.discard((u, v))
            cycle.append(u)
            ring = around[v]
            u, v = v, ring[(position[(v, u)] - 1) % len(ring)]
        pts = xy[cycle]
        area = 0.5 * float(np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1]))
        if area > 1e-9:
            first = cycle.index(min(cycle))
            faces.append(cycle[first:] + cycle[:first])
    return sorted(faces)


def region_masks(graph: PlanarGraph, height: int, width: int, *, min_area: int = 20) -> list[np.ndarray]:
    """HEAT's evaluation regions: connected parts of the image left after drawing the edges 1 px wide.

    4-connected parts, without the part holding pixel (0, 0) (the background) and without parts under
    ``min_area`` pixels (HEAT: 20).

    Returns:
        One ``[H, W]`` bool mask per region, in label order.
    """
    canvas = np.zeros((height, width), np.uint8)
    points = np.round(graph.corners).astype(np.int64)
    for i, j in graph.edges:
        cv2.line(canvas, tuple(int(v) for v in points[i]), tuple(int(v) for v in points[j]), 1, thickness=1)
    count, labels = cv2.connectedComponents((1 - canvas).astype(np.uint8), connectivity=4)
    background = labels[0, 0]
    masks = [labels == k for k in range(1, count) if k != background]
    return [m for m in masks if int(m.sum()) >= min_area]


def cycle_key(cycle: Sequence[int]) -> tuple[int, ...]:
    """A cycle up to rotation and direction (for comparing region lists)."""
    first = list(cycle).index(min(cycle))
    forward = tuple(cycle[first:]) + tuple(cycle[:first])
    backward = (forward[0], *reversed(forward[1:]))
    return min(forward, backward)
