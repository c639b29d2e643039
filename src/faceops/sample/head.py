"""The head around the inner face: outline, ears, neck, clothes, hair, hat and facial hair.

Each function draws one layer in face units through a :class:`~faceops.sample.canvas.Pen`;
:func:`faceops.sample.face.render_face` calls them back to front. Lengths are in face units.
"""

from __future__ import annotations

import numpy as np

from faceops.sample.canvas import RGB, Pen, curve_points, ellipse_points, mix
from faceops.sample.identity import Identity

__all__ = [
    "DEPTH_EAR",
    "crown_height",
    "head_box",
    "head_outline",
    "draw_body",
    "draw_hair_back",
    "draw_ears",
    "draw_skin",
    "draw_facial_hair",
    "draw_mustache",
    "draw_hair_front",
    "draw_hat",
]

DEPTH_EAR = -12.0  # ears sit behind the face plane, so a head turn moves them the other way
_DARK: RGB = (40, 24, 20)
_WHITE: RGB = (242, 240, 236)


def crown_height(ident: Identity) -> float:
    """Distance from the face origin up to the top of the skull (the forehead is taller than the chin half)."""
    return 1.08 * ident.face_h


def head_box(ident: Identity) -> tuple[float, float, float]:
    """Conservative extent of everything that must stay inside the photo: ``(half_width, top, bottom)``.

    Shoulders and long hair below the chin may be cut off by the frame; the head may not.
    """
    half_width = ident.face_w + ident.hair_volume + 14.0  # hat brim or ears with earrings
    top = -(crown_height(ident) + ident.hair_volume + 14.0)  # bun or hat crown
    return half_width, top, ident.face_h + 8.0  # full beard below the chin


def head_outline(ident: Identity, n: int = 64) -> np.ndarray:
    """Face outline [n, 2]: round skull on top, superellipse jaw (``ident.jaw``) below; starts at the right."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    lower = s >= 0
    power = np.where(lower, ident.jaw, 2.0)
    x = ident.face_w * np.sign(c) * np.abs(c) ** (2.0 / power)
    y = np.where(lower, ident.face_h, crown_height(ident)) * np.sign(s) * np.abs(s) ** (2.0 / power)
    return np.stack([x, y], axis=1)


def _hair_outline(ident: Identity, n: int = 40) -> np.ndarray:
    """Outer edge of the hair over the skull [n, 2], from the left side over the top to the right side."""
    t = np.linspace(np.pi, 2 * np.pi, n)
    wavy = 0.06 if ident.hair_style == "curly" else 0.025 if ident.has("Wavy_Hair") else 0.0
    r = 1.0 + wavy * np.sin(16 * t)
    rx, ry = ident.face_w + ident.hair_volume, crown_height(ident) + ident.hair_volume
    return np.stack([rx * r * np.cos(t), ry * r * np.sin(t)], axis=1)


def _hairline(ident: Identity, n: int = 21) -> np.ndarray:
    """Where hair meets the forehead [n, 2], from the right temple over the forehead to the left temple."""
    u = np.linspace(1.0, -1.0, n)
    temple_y = ident.eye_y - 5.0
    steep = 1.6 if ident.has("Receding_Hairline") else 2.6
    y = ident.hairline + (temple_y - ident.hairline) * np.abs(u) ** steep
    return np.stack([(ident.face_w - 1.5) * u, y], axis=1)


def _strip(x_out: float, x_in: float, top: float, bottom: float) -> np.ndarray:
    """A strip of hair along the side of the face [4, 2], narrowing from ``x_in`` at the top."""
    return np.array([[x_out, top], [x_in, top], [0.8 * x_in + 0.2 * x_out, bottom], [x_out, bottom]])


def draw_body(pen: Pen, ident: Identity, shirt: RGB, *, necklace: bool, necktie: bool, tie: RGB) -> None:
    """Neck, shirt (with a V neckline or collar and tie) and an optional necklace."""
    w, h = ident.face_w, ident.face_h
    neck = mix(ident.skin, _DARK, 0.15)
    pen.fill(np.array([[-0.42 * w, 0.5 * h], [0.42 * w, 0.5 * h], [0.42 * w, h + 45], [-0.42 * w, h + 45]]), neck)
    pen.disc(0.0, h + 82.0, 2.4 * w, 60.0, shirt)
    if necktie:
        for side in (-1.0, 1.0):
            pen.fill(np.array([[side * 0.44 * w, h + 21], [0.0, h + 30], [side * 0.05 * w, h + 20]]), _WHITE)
        pen.fill(np.array([[-3.0, h + 23], [3.0, h + 23], [2.4, h + 30], [-2.4, h + 30]]), tie)
        pen.fill(np.array([[-2.4, h + 30], [2.4, h + 30], [5.0, h + 62], [0.0, h + 68], [-5.0, h + 62]]), tie)
    else:
        pen.fill(np.array([[-0.42 * w, h + 21], [0.0, h + 38], [0.42 * w, h + 21]]), neck)
    if necklace:
        pen.stroke(curve_points((-0.4 * w, h + 13), (0.0, h + 35), (0.4 * w, h + 13)), ident.metal, 1.0)
        pen.disc(0.0, h + 25.5, 1.9, 2.4, ident.metal)


def draw_hair_back(pen: Pen, ident: Identity) -> None:
    """Hair that hangs behind the head: long and curly hair down the sides, a bun on top."""
    style, h = ident.hair_style, ident.face_h
    if style == "bun":
        pen.disc(0.0, -(crown_height(ident) + ident.hair_volume + 4.0), 9.5, 8.5, ident.hair)
    if style not in ("long", "curly"):
        return
    bottom = h + 22.0 if style == "long" else 0.6 * h
    top = _hair_outline(ident)
    rx = ident.face_w + ident.hair_volume + 2.0
    sides = np.array([[rx, 0.0], [rx + 1.0, bottom], [-rx - 1.0, bottom], [-rx, 0.0]])
    pen.fill(np.concatenate([top, sides]), ident.hair)


def draw_ears(pen: Pen, ident: Identity, earrings: bool) -> None:
    """Ears on both sides at eye-to-nose height, and earrings below the lobes."""
    cy = ident.eye_y + 0.5 * ident.nose_len
    for side in (-1.0, 1.0):
        cx = side * (ident.face_w - 1.0)
        pen.disc(cx, cy, 4.8, 9.0, mix(ident.skin, _DARK, 0.12), DEPTH_EAR)
        inner = ellipse_points(0.0, cy, 2.4, 6.0, start=-0.5 * np.pi, end=0.5 * np.pi, n=10)  # opens inwards
        inner[:, 0] = cx + side * (inner[:, 0] - 0.8)
        pen.stroke(inner, mix(ident.skin, _DARK, 0.35), 0.7, DEPTH_EAR)
        if earrings:
            if ident.earring_hoop:
                pen.stroke(ellipse_points(cx, cy + 12.0, 3.0, 3.4), ident.metal, 0.9, DEPTH_EAR, closed=True)
            else:
                pen.disc(cx, cy + 9.5, 1.7, 1.7, ident.metal, DEPTH_EAR)


def draw_skin(pen: Pen, ident: Identity) -> None:
    """The face itself, with a double chin where the identity has one.

    The double chin is a crease around the chin with a shaded fold below it, drawn above the chin's tip: the
    aligned 112x112 crop ends about 5 face units above the chin (the tip is inside it for under a fifth of
    the faces), so a fold under the chin would be a label that no aligned face shows.
    """
    pen.fill(head_outline(ident), ident.skin)
    if ident.has("Double_Chin"):
        w, h = ident.face_w, ident.face_h
        crease = curve_points((-0.5 * w, 0.66 * h), (0.0, 0.98 * h), (0.5 * w, 0.66 * h), 16)  # lowest at 0.82 h
        jaw = head_outline(ident, 80)[:41]  # right side -> chin -> left side
        fold = np.concatenate([crease, jaw[jaw[:, 1] >= 0.66 * h]])  # crease left -> right, jaw back to the left
        pen.fill(fold, mix(ident.skin, _DARK, 0.12))
        pen.stroke(crease, mix(ident.skin, _DARK, 0.4), 1.2)


def draw_facial_hair(pen: Pen, ident: Identity, nose_tip_y: float, mouth_y: float, depth: float) -> None:
    """Stubble, full beard or goatee (drawn before the mouth, so the lips stay visible)."""
    if ident.beard in ("stubble", "full"):
        jaw = head_outline(ident, 80)[:41]  # the lower half, right side -> chin -> left side
        top = nose_tip_y - 1.0 if ident.beard == "stubble" else ident.eye_y + 0.6 * ident.nose_len
        lower = jaw[jaw[:, 1] >= top]
        if ident.beard == "full":  # a beard is thicker than the jaw, mostly under the chin
            lower[:, 1] += 6.0 * (np.clip(lower[:, 1], 0, None) / ident.face_h) ** 4
        stubble = mix(mix(ident.skin, ident.hair, 0.5), _DARK, 0.35)  # short dark hairs over the skin
        pen.fill(lower, stubble if ident.beard == "stubble" else ident.hair)
    if ident.beard == "goatee":
        y0, w = mouth_y + ident.lip_low + 1.0, ident.mouth_w
        y1 = min(ident.face_h - 2.0, y0 + 14.0)  # a long face gets a chin tuft, not a strip to the chin
        goatee = np.array([[-0.4 * w, y0], [0.4 * w, y0], [0.3 * w, y1], [0.0, y1 + 3.0], [-0.3 * w, y1]])
        pen.fill(goatee, ident.hair, depth)


def draw_mustache(pen: Pen, ident: Identity, corners: np.ndarray, nose_tip_y: float, depth: float) -> None:
    """A mustache between the nose and the upper lip, its ends following the mouth corners [2, 2]."""
    (lx, ly), (rx, ry) = corners
    upper = curve_points((lx - 1.5, ly - 1.0), (0.0, nose_tip_y - 0.5), (rx + 1.5, ry - 1.0), 14)
    lower = curve_points((rx + 1.0, ry + 0.5), (0.0, nose_tip_y + 7.0), (lx - 1.0, ly + 0.5), 14)
    pen.fill(np.concatenate([upper, lower]), ident.hair, depth)


def draw_hair_front(pen: Pen, ident: Identity, fringe_y: float) -> None:
    """Hair over the skull down to the hairline, sideburns, bangs down to ``fringe_y``; a bald fringe."""
    if ident.hair_style == "bald":
        for side in (-1.0, 1.0):  # the horseshoe of hair left above the ears
            x0 = side * (ident.face_w + 0.5)
            pen.fill(_strip(x0, x0 - side * 3.5, ident.eye_y - 9.0, ident.eye_y + 7.0), ident.hair)
        return
    pen.fill(np.concatenate([_hair_outline(ident), _hairline(ident)]), ident.hair)
    if ident.has("Sideburns"):
        for side in (-1.0, 1.0):
            x0 = side * ident.face_w
            pen.fill(_strip(x0, x0 - side * 4.5, ident.eye_y - 6.0, ident.eye_y + 12.0), ident.hair)
    if ident.has("Bangs"):
        top = _hairline(ident)
        top[:, 1] -= 2.0
        x = np.linspace(-(ident.face_w - 2.5), ident.face_w - 2.5, 23)
        fringe = np.stack([x, fringe_y - 2.0 * np.abs(np.sin(0.5 * x))], axis=1)
        pen.fill(np.concatenate([top, fringe]), ident.hair)


def draw_hat(pen: Pen, ident: Identity, brim_y: float) -> None:
    """A cap with a brim or a beanie sitting at ``brim_y`` (above the brows)."""
    rx = ident.face_w + ident.hair_volume + 2.0
    top = -(crown_height(ident) + ident.hair_volume + 6.0)
    pen.fill(ellipse_points(0.0, brim_y, rx, brim_y - top, start=np.pi, end=2 * np.pi, n=30), ident.hat)
    band = mix(ident.hat, _DARK, 0.35)
    if ident.hat_brim:
        pen.disc(0.0, brim_y, rx + 10.0, 4.0, band)
    else:
        pen.fill(np.array([[-rx, brim_y - 6.0], [rx, brim_y - 6.0], [rx, brim_y + 1.0], [-rx, brim_y + 1.0]]), band)
