"""Drawing in a canonical face frame, placed into the photo by one known transform.

Why a canonical frame: every shape of a face is described once, in face units (origin at the face
centre, x to the image right, y down, the eyes about 34 units apart), and mapped to pixels by a
:class:`Placement`. The same mapping gives the landmark labels, so the labels are exactly where
the features are drawn, after scale, in-plane rotation and translation. Polygons are filled with
OpenCV's fixed-point coordinates (``shift``) so positions keep 1/16 px precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

__all__ = ["RGB", "Depth", "Placement", "Pen", "ellipse_points", "curve_points", "mix"]

RGB = tuple[float, float, float]
#: Depth of a shape (one value) or of each of its points ([N]), in face units; see :class:`Placement`.
Depth = float | np.ndarray

_SHIFT = 4  # OpenCV fixed-point bits: coordinates are drawn to 1/16 px
_ONE = float(1 << _SHIFT)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Blend two colours: ``t=0`` gives ``a``, ``t=1`` gives ``b``."""
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def ellipse_points(
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    *,
    start: float = 0.0,
    end: float = 2 * np.pi,
    n: int = 28,
    power: float = 2.0,
) -> np.ndarray:
    """Points on an axis-aligned (super)ellipse arc, angles in radians (0 = +x, pi/2 = +y, i.e. down).

    Args:
        cx, cy, rx, ry: centre and half-axes.
        start, end: arc range; a full turn gives a closed outline without a repeated point.
        n: number of points.
        power: superellipse exponent: 2 is an ellipse, larger is boxier, smaller is pointier.

    Returns:
        [n, 2] float64 (x, y) in face units.
    """
    t = np.linspace(start, end, n, endpoint=(end - start) < 2 * np.pi - 1e-9)
    c, s = np.cos(t), np.sin(t)
    if power != 2.0:
        c = np.sign(c) * np.abs(c) ** (2.0 / power)
        s = np.sign(s) * np.abs(s) ** (2.0 / power)
    return np.stack([cx + rx * c, cy + ry * s], axis=1)


def curve_points(p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float], n: int = 12) -> np.ndarray:
    """Quadratic Bezier from ``p0`` to ``p2`` pulled towards the control point ``p1``.

    Returns:
        [n, 2] float64 (x, y).
    """
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, b, c = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * b + t**2 * c


@dataclass(frozen=True)
class Placement:
    """Face units -> image pixels: a similarity transform plus a pseudo out-of-plane turn.

    Attributes:
        scale: pixels per face unit.
        angle: in-plane rotation in radians, clockwise as seen (image y points down).
        cx: image x of the face origin.
        cy: image y of the face origin.
        yaw: a head turn faked by shifting each feature sideways by ``yaw * depth`` face units:
            the nose (deep) moves more than the eyes, the face outline not at all, so the five
            landmarks are not a pure similarity of one template.
    """

    scale: float
    angle: float
    cx: float
    cy: float
    yaw: float = 0.0

    def to_image(self, points: np.ndarray, depth: Depth = 0.0) -> np.ndarray:
        """Map face-unit points [N, 2] at ``depth`` (one value or [N]) to image pixels [N, 2] (float64)."""
        p = np.array(points, dtype=np.float64).reshape(-1, 2)  # a copy: shifted in place below
        p[:, 0] += self.yaw * np.asarray(depth, dtype=np.float64)
        return p @ self._linear.T + (self.cx, self.cy)

    @cached_property
    def _linear(self) -> np.ndarray:
        """Rotation times scale [2, 2], computed once per placement."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        return self.scale * np.array([[c, -s], [s, c]])


class Pen:
    """Draws face-unit shapes onto a BGR uint8 image through a :class:`Placement`.

    Colours are given as RGB (readable palettes) and converted to OpenCV's BGR here, once.
    """

    def __init__(self, image: np.ndarray, placement: Placement) -> None:
        self.image = image
        self.placement = placement

    def _pixels(self, points: np.ndarray, depth: Depth) -> list[np.ndarray]:
        fixed = np.round(self.placement.to_image(points, depth) * _ONE).astype(np.int32)
        return [fixed.reshape(-1, 1, 2)]

    def fill(self, points: np.ndarray, rgb: RGB, depth: Depth = 0.0) -> None:
        """Fill the polygon through ``points`` [N, 2]."""
        cv2.fillPoly(self.image, self._pixels(points, depth), rgb[::-1], cv2.LINE_AA, _SHIFT)

    def stroke(self, points: np.ndarray, rgb: RGB, width: float, depth: Depth = 0.0, closed: bool = False) -> None:
        """Draw the polyline through ``points`` [N, 2], ``width`` in face units (at least 1 px)."""
        thickness = max(1, int(round(width * self.placement.scale)))
        cv2.polylines(self.image, self._pixels(points, depth), closed, rgb[::-1], thickness, cv2.LINE_AA, _SHIFT)

    def disc(self, cx: float, cy: float, rx: float, ry: float, rgb: RGB, depth: Depth = 0.0) -> None:
        """Fill an axis-aligned ellipse (in face units)."""
        self.fill(ellipse_points(cx, cy, rx, ry), rgb, depth)
