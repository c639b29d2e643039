"""HEAT's per-image corner/edge annotation files (``annot/<name>.npy``), read without running pickle code.

HEAT (Chen, Qian and Furukawa, "HEAT: Holistic Edge Attention Transformer for Structured Reconstruction",
CVPR 2022, arXiv 2111.15143; code github.com/woodfrog/heat) stores each image's planar graph as a ``.npy``
file holding one pickled Python dict: corner ``(x, y)`` -> array ``[k, 2]`` of the corners it is joined to
(each edge listed from both ends). Its own code reads them with ``np.load(allow_pickle=True)``, which runs
whatever the pickle asks for. Here the pickle is read by an unpickler that can build only numpy arrays and
dtypes (:data:`_ALLOWED_GLOBALS`); a file naming anything else is refused before anything runs.
:func:`heat_annotation_bytes` writes the same layout (numpy's ``np.save`` of such a dict), so the generated
data set is read by exactly the reader real data goes through.
"""

from __future__ import annotations

import importlib
import io
import math
import pickle
from collections.abc import Sequence

import numpy as np

__all__ = ["HEAT_ANNOTATIONS", "HEAT_IMAGES", "HeatAnnotationError", "heat_annotation_bytes", "read_heat_annotation"]

#: HEAT's layout: images in ``rgb/<name>.<ext>``, their annotations in ``annot/<name>.npy``.
HEAT_IMAGES = "rgb"
HEAT_ANNOTATIONS = "annot"

#: The globals a HEAT annotation pickle may name: numpy's array reconstruction, nothing else.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}  # fmt: skip
#: Refuse annotations of more corners than this (a guard against hostile files).
MAX_CORNERS = 100_000


class HeatAnnotationError(ValueError):
    """An annotation file that is not a safe, well-formed HEAT annotation; the message says why."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise HeatAnnotationError(f"the pickle names {module}.{name}; a HEAT annotation holds only numpy arrays")
        module = module.replace("numpy.core.", "numpy._core.") if hasattr(np, "_core") else module
        return getattr(importlib.import_module(module), name)


def _unpickle(data: bytes) -> object:
    """The object of an ``np.save``-d object array, through the restricted unpickler."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(stream)
    except ValueError as err:
        raise HeatAnnotationError(f"not a .npy file ({err})") from None
    if dtype != np.dtype(object) or shape != ():
        raise HeatAnnotationError(
            f"expected one pickled dict (dtype object, shape ()), got dtype {dtype}, shape {shape}"
        )
    try:
        array = _NumpyOnlyUnpickler(stream, encoding="latin1").load()
    except HeatAnnotationError:
        raise
    except Exception as err:  # a corrupt pickle raises many types; none of them ran foreign code
        raise HeatAnnotationError(f"corrupt pickle ({type(err).__name__}: {err})") from None
    return array.item() if isinstance(array, np.ndarray) and array.shape == () else array


def _point(value: object, what: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in np.asarray(value, dtype=np.float64).reshape(2))
    except (TypeError, ValueError):
        raise HeatAnnotationError(f"{what} {value!r:.60} is not an (x, y) pair of numbers") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise HeatAnnotationError(f"{what} {value!r:.60} is not finite")
    return x, y


def read_heat_annotation(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Corners and edges of one HEAT annotation file's bytes.

    Returns:
        ``corners`` [N, 2] float64 (x, y) in the dict's order, and ``edges`` [E, 2] int64 index pairs
        ``i < j``, each edge once (whether the file lists it from one end or both), sorted.

    Raises:
        HeatAnnotationError: not a ``.npy`` of one pickled dict, a pickle naming anything but numpy arrays,
            a key or neighbour that is not an (x, y) pair, a neighbour that is not a corner of the dict, a
            corner joined to itself, or more than :data:`MAX_CORNERS` corners.
    """
    annotation = _unpickle(data)
    if not isinstance(annotation, dict):
        raise HeatAnnotationError(f"expected a dict of corner -> neighbours, got {type(annotation).__name__}")
    if len(annotation) > MAX_CORNERS:
        raise HeatAnnotationError(f"{len(annotation)} corners, over the limit of {MAX_CORNERS}")
    index = {_point(key, "corner"): i for i, key in enumerate(annotation)}
    if len(index) != len(annotation):
        raise HeatAnnotationError("two corners of the dict are the same point")
    edges = set()
    for key, neighbours in annotation.items():
        i = index[_point(key, "corner")]
        try:
            rows = np.asarray(neighbours, dtype=object).reshape(-1, 2)
        except (TypeError, ValueError):
            raise HeatAnnotationError(f"the neighbours of corner {key} are not [k, 2] points") from None
        for other in rows:
            j = index.get(_point(other, f"neighbour of corner {key}"))
            if j is None:
                raise HeatAnnotationError(
                    f"corner {key} is joined to {tuple(other)}, which is not a corner of the file"
                )
            if j == i:
                raise HeatAnnotationError(f"corner {key} is joined to itself")
            edges.add((min(i, j), max(i, j)))
    corners = np.array(list(index), np.float64).reshape(-1, 2)
    return corners, np.array(sorted(edges), np.int64).reshape(-1, 2)


def heat_annotation_bytes(corners: np.ndarray, edges: Sequence[Sequence[int]]) -> bytes:
    """The ``.npy`` bytes HEAT's layout holds for a graph (each edge listed from both ends).

    The bytes depend only on the graph (corner order, then edge order), so a data set written twice is
    the same file by file.
    """
    neighbours: list[list[int]] = [[] for _ in range(len(corners))]
    for i, j in edges:
        neighbours[int(i)].append(int(j))
        neighbours[int(j)].append(int(i))
    points = [(float(x), float(y)) for x, y in np.asarray(corners, np.float64).reshape(-1, 2)]
    annotation = {p: np.array([points[j] for j in ns], np.float64).reshape(-1, 2) for p, ns in zip(points, neighbours)}
    buffer = io.BytesIO()
    np.save(buffer, annotation, allow_pickle=True)
    return buffer.getvalue()
