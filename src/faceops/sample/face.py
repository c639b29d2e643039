"""One synthetic face: its per-photo look, the expression shapes, and the back-to-front drawing.

:func:`render_face` draws an :class:`~faceops.sample.identity.Identity` wearing a :class:`Look`
into a photo and returns the five landmarks computed from the very shapes it drew, mapped by the
same :class:`~faceops.sample.canvas.Placement`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceops.labels import EXPRESSIONS
from faceops.sample import features as ft
from faceops.sample import head
from faceops.sample.canvas import RGB, Pen, Placement
from faceops.sample.identity import Identity

__all__ = ["Look", "render_face"]


@dataclass(frozen=True)
class Look:
    """What changes between photos of one identity, apart from camera and light.

    Attributes:
        expression: index into :data:`faceops.labels.EXPRESSIONS`.
        intensity: how strongly the expression shows (1 = the shapes in ``_SHAPES``).
        mouth_gap: how far the lips part, in face units (0 = closed).
        age: age in years at this photo.
        glasses, hat, earrings, necklace, necktie: accessories worn.
        shirt, tie: clothing colours (RGB).
    """

    expression: int
    intensity: float
    mouth_gap: float
    age: float
    glasses: bool
    hat: bool
    earrings: bool
    necklace: bool
    necktie: bool
    shirt: RGB
    tie: RGB


@dataclass(frozen=True)
class _Shape:
    """How an expression moves the face, at intensity 1 (face units or multipliers)."""

    brow_raise: float  # both brows up (+) or down (-)
    brow_inner: float  # inner brow ends up (+: sad, afraid) or down (-: angry)
    eye_open: float  # eye height multiplier
    smile: float  # mouth corners up (+) or down (-)
    mouth_width: float  # mouth width multiplier
    tilt: float  # one mouth corner up, the other down


_SHAPES: dict[str, _Shape] = {
    "neutral": _Shape(0.0, 0.0, 1.0, 0.0, 1.0, 0.0),
    "happiness": _Shape(1.0, 0.0, 0.8, 4.5, 1.15, 0.0),
    "sadness": _Shape(0.5, 3.0, 0.8, -3.0, 0.95, 0.0),
    "surprise": _Shape(5.0, 0.5, 1.35, 0.0, 0.75, 0.0),
    "fear": _Shape(3.0, 2.5, 1.3, -1.0, 1.1, 0.0),
    "disgust": _Shape(-1.5, -1.0, 0.7, -1.0, 0.95, 1.8),
    "anger": _Shape(-2.5, -3.5, 0.75, -1.5, 0.95, 0.0),
}
assert set(_SHAPES) == set(EXPRESSIONS), f"expression shapes {sorted(_SHAPES)} != EXPRESSIONS {EXPRESSIONS}"


def render_face(image: np.ndarray, placement: Placement, ident: Identity, look: Look) -> np.ndarray:
    """Draw the identity with this look into ``image`` (BGR uint8 [H, W, 3], drawn in place).

    Returns:
        The five landmarks [5, 2] (x, y) in image pixels, in :data:`faceops.labels.LANDMARK_NAMES`
        order: the eye centres (iris centres), the nose tip and the ends of the lip line.
    """
    pen = Pen(image, placement)
    shape, k = _SHAPES[EXPRESSIONS[look.expression]], look.intensity
    tip_y = ident.eye_y + ident.nose_len
    mouth = ft.Mouth(
        cy=tip_y + ident.mouth_drop,
        half_w=ident.mouth_w * (1.0 + k * (shape.mouth_width - 1.0)),
        smile=k * shape.smile,
        tilt=k * shape.tilt,
        gap=look.mouth_gap,
        lip_up=ident.lip_up,
        lip_low=ident.lip_low,
    )
    brow_raise = k * shape.brow_raise
    brow_top = ident.eye_y - ident.brow_gap - ident.brow_arch - 0.5 * ident.brow_width - 1.0  # without expression

    head.draw_body(pen, ident, look.shirt, necklace=look.necklace, necktie=look.necktie, tie=look.tie)
    head.draw_hair_back(pen, ident)
    head.draw_ears(pen, ident, look.earrings)
    head.draw_skin(pen, ident)
    ft.draw_cheeks(pen, ident, tip_y)
    ft.draw_wrinkles(pen, ident, look.age, mouth, brow_top - brow_raise)
    head.draw_facial_hair(pen, ident, tip_y, mouth.cy, ft.DEPTH_MOUTH)
    if ident.has("Mustache"):
        head.draw_mustache(pen, ident, mouth.corners(), tip_y, ft.DEPTH_MOUTH)
    ft.draw_eyes(pen, ident, 1.0 + k * (shape.eye_open - 1.0))
    ft.draw_brows(pen, ident, brow_raise, k * shape.brow_inner)
    ft.draw_nose(pen, ident, wrinkled=EXPRESSIONS[look.expression] == "disgust")
    ft.draw_mouth(pen, ident.lips, mouth)
    head.draw_hair_front(pen, ident, fringe_y=brow_top - 2.0)
    if look.hat:
        head.draw_hat(pen, ident, brim_y=brow_top - 5.0)
    if look.glasses:
        ft.draw_glasses(pen, ident)

    eyes_nose = np.array([[-ident.eye_dx, ident.eye_y], [ident.eye_dx, ident.eye_y], [0.0, tip_y]])
    points = np.concatenate([eyes_nose, mouth.corners()])  # [5, 2] in LANDMARK_NAMES order
    depths = np.array([ft.DEPTH_EYE, ft.DEPTH_EYE, ft.DEPTH_NOSE, ft.DEPTH_MOUTH, ft.DEPTH_MOUTH])
    return placement.to_image(points, depths)
