"""The inner face: eyes, brows, nose, mouth, cheeks, wrinkles and glasses.

The landmark points are properties of the shapes drawn here (an eye's centre is its iris centre,
the mouth corners are the ends of the lip line), so :mod:`faceops.sample.face` reads the labels
from the same geometry it draws. Lengths are in face units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceops.sample.canvas import RGB, Pen, curve_points, ellipse_points, mix
from faceops.sample.identity import Identity

__all__ = [
    "AGE_LINES_FROM",
    "DEPTH_EYE",
    "DEPTH_NOSE",
    "DEPTH_MOUTH",
    "Mouth",
    "draw_cheeks",
    "draw_wrinkles",
    "draw_eyes",
    "draw_brows",
    "draw_nose",
    "draw_mouth",
    "draw_glasses",
]

#: Age (years) of the first age lines; ``Young`` is the label of the photos taken before it.
AGE_LINES_FROM = 35.0

# How far each feature stands out of the face plane: a head turn shifts it by yaw * depth.
DEPTH_EYE = 8.0
DEPTH_NOSE = 26.0
DEPTH_MOUTH = 14.0

_DARK: RGB = (40, 24, 20)
_BLACK: RGB = (0, 0, 0)  # age marks darken the skin by a share of its own tone, so they show on every skin tone
_WHITE: RGB = (250, 248, 244)
_SCLERA: RGB = (236, 232, 226)
_PUPIL: RGB = (14, 10, 10)
_MOUTH_INSIDE: RGB = (80, 24, 30)
_TEETH: RGB = (238, 234, 222)


@dataclass(frozen=True)
class Mouth:
    """Lip geometry of one photo.

    The lip line is ``y(x) = cy - smile * (x / half_w)^2 + tilt * (x / half_w)`` for ``|x| <= half_w``;
    its ends are the mouth-corner landmarks.

    Attributes:
        cy: height of the lip line at the centre.
        half_w: half the mouth width.
        smile: how far the corners rise (negative: they drop).
        tilt: one corner up and the other down (a sneer).
        gap: how far the lips part at the centre (0 = closed).
        lip_up, lip_low: upper and lower lip thickness.
    """

    cy: float
    half_w: float
    smile: float
    tilt: float
    gap: float
    lip_up: float
    lip_low: float

    def line(self, x: np.ndarray) -> np.ndarray:
        """Height of the lip line at ``x`` [N]."""
        u = np.asarray(x, dtype=np.float64) / self.half_w
        return self.cy - self.smile * u**2 + self.tilt * u

    def corners(self) -> np.ndarray:
        """Left and right mouth corners [2, 2] (image left first)."""
        x = np.array([-self.half_w, self.half_w])
        return np.stack([x, self.line(x)], axis=1)


def _clip_to_ellipse(points: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Clamp each point vertically into the ellipse: turns a convex outline into its intersection with it."""
    x = np.clip(points[:, 0], cx - rx, cx + rx)
    half = ry * np.sqrt(np.clip(1.0 - ((x - cx) / rx) ** 2, 0.0, None))
    return np.stack([x, np.clip(points[:, 1], cy - half, cy + half)], axis=1)


def _band(x: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Polygon [2N, 2] between two curves sampled at the same ``x`` [N]."""
    return np.concatenate([np.stack([x, upper], 1), np.stack([x, lower], 1)[::-1]])


def draw_cheeks(pen: Pen, ident: Identity, nose_tip_y: float) -> None:
    """Rosy cheeks and high-cheekbone highlights with a shadow below."""
    for side in (-1.0, 1.0):
        if ident.has("High_Cheekbones"):
            pen.disc(side * (ident.eye_dx + 4.0), ident.eye_y + 9.0, 7.0, 3.0, mix(ident.skin, _WHITE, 0.14))
            shade = curve_points(
                (side * (ident.face_w - 3.0), ident.eye_y + 11.0),
                (side * (ident.eye_dx + 5.0), ident.eye_y + 15.0),
                (side * ident.eye_dx, nose_tip_y + 3.0),
            )
            pen.stroke(shade, mix(ident.skin, _DARK, 0.2), 1.0)
        if ident.has("Rosy_Cheeks"):
            pen.disc(side * (ident.eye_dx + 1.5), nose_tip_y + 0.5, 7.0, 4.5, mix(ident.skin, (226, 92, 104), 0.35))


def draw_wrinkles(pen: Pen, ident: Identity, age: float, mouth: Mouth, brow_top: float) -> None:
    """Age lines from :data:`AGE_LINES_FROM` on, deeper and more numerous with age: forehead, crow's feet,
    nose-to-mouth folds. The first line is drawn plainly (not faded in), so the ``Young`` boundary shows."""
    if age < AGE_LINES_FROM:
        return
    strength = float(np.clip((age - AGE_LINES_FROM) / 30.0, 0.0, 1.0))
    colour = mix(ident.skin, _BLACK, 0.3 + 0.25 * strength)
    half = 0.5 * ident.face_w
    for i in range(1 + int(strength * 2.99)):
        y = brow_top - 4.0 - 3.5 * i
        pen.stroke(curve_points((-half, y + 1.0), (0.0, y - 1.0), (half, y + 1.0)), colour, 0.7)
    tip_y = ident.eye_y + ident.nose_len
    for side in (-1.0, 1.0):
        x0 = side * (ident.eye_dx + ident.eye_rx + 1.5)
        for dy in (-1.5, 1.5):
            crow = np.array([[x0, ident.eye_y + 0.3 * dy], [x0 + side * 3.5, ident.eye_y + dy]])
            pen.stroke(crow, colour, 0.6, DEPTH_EYE)
        fold = curve_points(
            (side * 0.55 * ident.nose_w, tip_y - 1.0),
            (side * (mouth.half_w + 4.0), mouth.cy - 4.0),
            (side * (mouth.half_w + 2.5), mouth.cy + 5.0),
        )
        pen.stroke(fold, colour, 0.8, DEPTH_MOUTH)


def draw_eyes(pen: Pen, ident: Identity, openness: float) -> None:
    """Both eyes: makeup, bags, sclera, iris and pupil clipped by the lids, lid lines.

    ``openness`` scales the eye height (expression); the iris keeps its size, so a narrow eye hides more of it.
    """
    rx, ry = ident.eye_rx, ident.eye_ry * openness
    iris_r = min(1.05 * ident.eye_ry, 0.55 * rx)
    lid = mix(ident.skin, _DARK, 0.75)
    for side in (-1.0, 1.0):
        cx, cy = side * ident.eye_dx, ident.eye_y
        if ident.eyeshadow is not None:
            pen.disc(cx, cy - 0.5 * ry, 1.15 * rx, ry + 3.2, mix(ident.skin, ident.eyeshadow, 0.55), DEPTH_EYE)
        if ident.has("Bags_Under_Eyes"):
            bag = ellipse_points(cx, cy + 1.5, 0.9 * rx, ry + 1.8, start=0.15 * np.pi, end=0.85 * np.pi, n=10)
            pen.stroke(bag, mix(ident.skin, _BLACK, 0.35), 0.8, DEPTH_EYE)
        pen.fill(ellipse_points(cx, cy, rx, ry), _SCLERA, DEPTH_EYE)
        pen.fill(_clip_to_ellipse(ellipse_points(cx, cy, iris_r, iris_r, n=24), cx, cy, rx, ry), ident.iris, DEPTH_EYE)
        pupil = ellipse_points(cx, cy, 0.45 * iris_r, 0.45 * iris_r, n=16)
        pen.fill(_clip_to_ellipse(pupil, cx, cy, rx, ry), _PUPIL, DEPTH_EYE)
        upper = ellipse_points(cx, cy, rx, ry, start=np.pi, end=2 * np.pi, n=14)
        pen.stroke(upper, lid, 1.0 if ident.has("Male") else 1.4, DEPTH_EYE)
        lower = ellipse_points(cx, cy, rx, ry, start=0.0, end=np.pi, n=14)
        pen.stroke(lower, mix(ident.skin, _DARK, 0.35), 0.6, DEPTH_EYE)


def draw_brows(pen: Pen, ident: Identity, raise_: float, inner: float) -> None:
    """Both brows; ``raise_`` lifts them, ``inner`` lifts (+) or lowers (-) their inner ends."""
    base = ident.eye_y - ident.brow_gap - raise_
    for side in (-1.0, 1.0):
        start = (side * (ident.eye_dx - 0.9 * ident.eye_rx), base - inner)
        peak = (side * (ident.eye_dx + 0.2 * ident.eye_rx), base - 2.0 * ident.brow_arch - 0.5 * inner)
        end = (side * (ident.eye_dx + 1.25 * ident.eye_rx), base + 1.5)
        pen.stroke(curve_points(start, peak, end), ident.brow, ident.brow_width, DEPTH_EYE)


def draw_nose(pen: Pen, ident: Identity, wrinkled: bool) -> None:
    """Bridge shading, wings, nostrils and a round or pointed tip at ``(0, eye_y + nose_len)``."""
    tip_y, w = ident.eye_y + ident.nose_len, ident.nose_w
    shade = mix(ident.skin, _DARK, 0.25)
    for side in (-1.0, 1.0):
        x0, x1 = side * 2.2, side * 0.42 * w
        bridge = curve_points((x0, ident.eye_y + 3.0), (side * 2.8, tip_y - 8.0), (x1, tip_y - 3.0))
        pen.stroke(bridge, shade, 0.8, np.linspace(DEPTH_EYE, DEPTH_NOSE, len(bridge)))  # from the brow to the tip
        wing = curve_points((side * 0.25 * w, tip_y - 3.5), (side * 0.62 * w, tip_y - 1.0), (side * 0.3 * w, tip_y + 2))
        pen.stroke(wing, shade, 0.8, DEPTH_NOSE)
        pen.disc(side * 0.3 * w, tip_y + 0.8, 0.16 * w, 0.09 * w, mix(ident.skin, _DARK, 0.6), DEPTH_NOSE)
        if wrinkled:
            crease = np.array([[side * 1.5, ident.eye_y + 2.0], [side * 4.0, ident.eye_y + 4.5]])
            pen.stroke(crease, shade, 0.7, DEPTH_NOSE)
    if ident.has("Pointy_Nose"):
        vee = curve_points((-0.2 * w, tip_y - 2.5), (0.0, tip_y + 2.5), (0.2 * w, tip_y - 2.5), 7)  # vertex at the tip
        pen.stroke(vee, shade, 0.8, DEPTH_NOSE)
    else:
        pen.disc(0.0, tip_y - 0.4, 0.18 * w, 0.15 * w, mix(ident.skin, _WHITE, 0.18), DEPTH_NOSE)  # tip highlight
        underside = curve_points((-0.22 * w, tip_y + 0.3), (0.0, tip_y + 1.8), (0.22 * w, tip_y + 0.3), 7)
        pen.stroke(underside, shade, 0.8, DEPTH_NOSE)


def draw_mouth(pen: Pen, lips: RGB, mouth: Mouth) -> None:
    """Lips along the lip line; when parted, the dark inside and the upper teeth."""
    x = np.linspace(-mouth.half_w, mouth.half_w, 19)
    g = np.sqrt(np.clip(1.0 - (x / mouth.half_w) ** 2, 0.0, None))
    centre = mouth.line(x)
    upper_in, lower_in = centre - 0.3 * mouth.gap * g, centre + 0.7 * mouth.gap * g
    bow = 0.35 * mouth.lip_up * np.exp(-((x / (0.2 * mouth.half_w)) ** 2))  # the dip in the upper lip's middle
    top = upper_in - mouth.lip_up * g**0.6 + bow
    bottom = lower_in + mouth.lip_low * g**0.6
    pen.fill(_band(x, top, upper_in), lips, DEPTH_MOUTH)
    pen.fill(_band(x, lower_in, bottom), lips, DEPTH_MOUTH)
    line = mix(lips, _DARK, 0.55)
    if mouth.gap > 0.0:
        pen.fill(_band(x, upper_in, lower_in), _MOUTH_INSIDE, DEPTH_MOUTH)
        pen.fill(_band(x, upper_in, np.minimum(upper_in + 0.45 * mouth.gap * g, lower_in)), _TEETH, DEPTH_MOUTH)
        pen.stroke(np.stack([x, lower_in], 1), line, 0.6, DEPTH_MOUTH)
    pen.stroke(np.stack([x, upper_in], 1), line, 0.8, DEPTH_MOUTH)


def draw_glasses(pen: Pen, ident: Identity) -> None:
    """Two lenses around the eyes (round or rectangular frames), bridge and temples to the ears."""
    r = 1.45 * ident.eye_rx
    power = 2.0 if ident.frame_round else 5.0
    y = ident.eye_y
    inner = ident.eye_dx - r
    for side in (-1.0, 1.0):
        rim = ellipse_points(side * ident.eye_dx, y, r, 0.85 * r, n=32, power=power)
        pen.stroke(rim, ident.frame, 1.5, DEPTH_EYE, closed=True)
        temple = np.array([[side * (ident.eye_dx + r), y - 1.0], [side * (ident.face_w + 0.5), y - 1.5]])
        pen.stroke(temple, ident.frame, 1.2, np.array([DEPTH_EYE, 0.0]))
    pen.stroke(curve_points((-inner, y - 1.0), (0.0, y - 3.5), (inner, y - 1.0), 8), ident.frame, 1.3, DEPTH_EYE)
