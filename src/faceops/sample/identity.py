"""Per-identity appearance of the synthetic faces: geometry, colours, style and fixed attributes.

Why per identity: a recognition model must have something stable to learn (face shape, eye
spacing, nose, mouth, brows, hair, skin tone), while everything that changes from photo to photo
(expression, accessories, pose, light) is drawn per image elsewhere. Each identity comes from its
own RNG seeded by ``(seed, index)``, so adding identities never changes the earlier ones.

Lengths are in face units (see :mod:`faceops.sample.canvas`); colours are RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from faceops.sample.canvas import RGB, mix

__all__ = ["Identity", "draw_identity", "identity_name", "GROUPS", "HAIR_STYLES", "BEARDS"]

T = TypeVar("T")

#: Skin-tone groups (fairness / domain-adaptation label), lightest to darkest, with their base tone.
GROUPS: tuple[str, ...] = ("g0", "g1", "g2", "g3")
_GROUP_SKIN: tuple[RGB, ...] = ((236, 200, 172), (212, 160, 120), (164, 108, 70), (96, 60, 40))
_PALE: RGB = (250, 230, 218)

_HAIR_RGB: dict[str, RGB] = {
    "black": (30, 25, 24),
    "brown": (98, 62, 36),
    "blond": (220, 186, 118),
    "gray": (178, 176, 172),
    "red": (156, 68, 34),
}
#: Hair colour -> its CelebA attribute (red hair has none).
_HAIR_ATTRIBUTE: dict[str, str | None] = {
    "black": "Black_Hair", "brown": "Brown_Hair", "blond": "Blond_Hair", "gray": "Gray_Hair", "red": None,
}  # fmt: skip
#: Probability of each non-grey hair colour per skin-tone group (order of ``_HAIR_RGB`` without grey).
_HAIR_COLOURS = ("black", "brown", "blond", "red")
_HAIR_BY_GROUP = ((0.15, 0.35, 0.35, 0.15), (0.35, 0.45, 0.12, 0.08), (0.7, 0.25, 0.05, 0.0), (0.85, 0.15, 0.0, 0.0))

HAIR_STYLES: tuple[str, ...] = ("short", "long", "curly", "bun", "bald")
BEARDS: tuple[str, ...] = ("none", "stubble", "goatee", "full")

_IRIS: tuple[RGB, ...] = ((70, 42, 24), (40, 28, 20), (60, 100, 150), (70, 110, 70), (110, 84, 50))
_LIPSTICK: tuple[RGB, ...] = ((190, 30, 50), (200, 60, 110), (150, 30, 40), (210, 90, 90))
_EYESHADOW: tuple[RGB, ...] = ((120, 80, 150), (70, 90, 150), (120, 80, 60), (60, 60, 70))
_FRAMES: tuple[RGB, ...] = ((20, 20, 22), (60, 36, 24), (30, 40, 80), (110, 30, 30), (45, 45, 50))
_HATS: tuple[RGB, ...] = ((40, 60, 120), (150, 40, 40), (40, 40, 45), (200, 190, 160), (60, 110, 60), (230, 120, 40))
_METALS: tuple[RGB, ...] = ((212, 175, 55), (200, 200, 210))
#: Drawn traits whose absence makes an identity ``Attractive`` (about 40% of identities).
_UNATTRACTIVE = frozenset({"Chubby", "Double_Chin", "Bags_Under_Eyes", "Big_Nose", "Narrow_Eyes"})


@dataclass(frozen=True)
class Identity:
    """Everything about one synthetic person that stays fixed across their photos.

    Attributes:
        name: identity label, e.g. ``"id_0007"``.
        group: index into :data:`GROUPS` (drives the skin tone).
        base_age: age in years; each photo jitters it slightly.
        traits: the identity-level CelebA attributes that are 1 (``Male``, ``Bangs``, ...).
        skin, hair, iris, lips, brow, frame, hat, metal, eyeshadow: colours (RGB).
        hair_style: one of :data:`HAIR_STYLES`; ``hair_volume`` its thickness; ``hairline`` its y.
        beard: one of :data:`BEARDS`.
        face_w, face_h: half width and half height (forehead to chin) of the face.
        jaw: superellipse exponent of the lower face (>2 square jaw, <2 pointed chin).
        eye_dx, eye_y, eye_rx, eye_ry: eye centres at (+-eye_dx, eye_y) and eye half-axes.
        brow_gap, brow_width, brow_arch: brow height above the eye, stroke width, arch height.
        nose_len, nose_w: eye line to nose tip, nose width.
        mouth_drop, mouth_w, lip_up, lip_low: nose tip to mouth, mouth half width, lip thicknesses.
        glasses_p, hat_p, earrings_p, necklace_p, necktie_p: per-photo chance of each accessory.
        frame_round, hat_brim, earring_hoop: style switches of the accessories.
    """

    name: str
    group: int
    base_age: float
    traits: frozenset[str]
    skin: RGB
    hair: RGB
    iris: RGB
    lips: RGB
    brow: RGB
    frame: RGB
    hat: RGB
    metal: RGB
    eyeshadow: RGB | None
    hair_style: str
    hair_volume: float
    hairline: float
    beard: str
    face_w: float
    face_h: float
    jaw: float
    eye_dx: float
    eye_y: float
    eye_rx: float
    eye_ry: float
    brow_gap: float
    brow_width: float
    brow_arch: float
    nose_len: float
    nose_w: float
    mouth_drop: float
    mouth_w: float
    lip_up: float
    lip_low: float
    glasses_p: float
    hat_p: float
    earrings_p: float
    necklace_p: float
    necktie_p: float
    frame_round: bool
    hat_brim: bool
    earring_hoop: bool

    def has(self, attribute: str) -> bool:
        """Whether the identity-level attribute is 1."""
        return attribute in self.traits


def identity_name(index: int) -> str:
    """The identity label of the ``index``-th identity: ``id_0007`` (grows past 4 digits)."""
    return f"id_{index:04d}"


def _pick(rng: np.random.Generator, options: tuple[T, ...], p: tuple[float, ...] | None = None) -> T:
    """One of ``options``, with probabilities ``p`` (uniform when None)."""
    return options[int(rng.choice(len(options), p=p))]


def draw_identity(seed: int, index: int) -> Identity:
    """Draw the fixed appearance of identity ``index`` from an RNG seeded by ``(seed, index)``.

    Args:
        seed: data-set seed.
        index: identity index (0-based).

    Returns:
        The identity; the same ``(seed, index)`` always gives the same one.
    """
    rng = np.random.default_rng([seed, 0, index])
    u = rng.random  # one uniform draw per call, in a fixed order
    group = int(rng.integers(len(GROUPS)))
    male = u() < 0.5
    base_age = float(rng.uniform(18.0, 75.0))
    traits: set[str] = {"Male"} if male else set()

    def maybe(attribute: str, p: float) -> bool:
        hit = u() < p
        if hit:
            traits.add(attribute)
        return hit

    # skin
    skin = tuple(float(np.clip(c + rng.uniform(-10, 10), 0, 255)) for c in _GROUP_SKIN[group])
    if group <= 1 and maybe("Pale_Skin", 0.3):
        skin = mix(skin, _PALE, 0.45)

    # hair
    if male:
        style = _pick(rng, HAIR_STYLES, (0.55, 0.1, 0.12, 0.0, 0.23) if base_age > 35 else (0.7, 0.15, 0.15, 0.0, 0.0))
    else:
        style = _pick(rng, HAIR_STYLES, (0.15, 0.55, 0.12, 0.18, 0.0))
    colour = _pick(rng, _HAIR_COLOURS, _HAIR_BY_GROUP[group])
    grey = base_age > 50 and u() < min(0.9, (base_age - 45.0) / 25.0)
    colour = "gray" if grey else colour
    shade = float(rng.uniform(0.85, 1.15))  # one factor for all channels keeps grey hair grey
    hair = tuple(float(np.clip(c * shade, 0, 255)) for c in _HAIR_RGB[colour])
    hair_volume = {"short": 3.0, "long": 6.0, "curly": 10.0, "bun": 5.0, "bald": 0.0}[style] + float(rng.uniform(0, 3))
    if style == "bald":
        traits.add("Bald")
    else:
        if (attr := _HAIR_ATTRIBUTE[colour]) is not None:
            traits.add(attr)
        traits.add("Wavy_Hair" if style == "curly" or u() < 0.25 else "Straight_Hair")
        maybe("Bangs", 0.15 if male else 0.35)
        if male and base_age > 28 and "Bangs" not in traits:
            maybe("Receding_Hairline", 0.35)

    # face shape
    chubby = maybe("Chubby", 0.15)
    oval = maybe("Oval_Face", 0.35)
    face_w = float(rng.uniform(36, 41)) + (4.0 if chubby else 0.0) + (1.5 if male else 0.0)
    face_h = face_w * (float(rng.uniform(1.32, 1.42)) if oval else float(rng.uniform(1.18, 1.3)))
    jaw = float(rng.uniform(2.4, 3.3)) if male else float(rng.uniform(1.75, 2.25))
    if chubby or base_age > 50:
        maybe("Double_Chin", 0.6 if chubby else 0.3)
    maybe("High_Cheekbones", 0.3)
    maybe("Rosy_Cheeks", 0.15)
    if base_age > 35:
        maybe("Bags_Under_Eyes", min(0.7, (base_age - 30.0) / 50.0))

    # features
    narrow = maybe("Narrow_Eyes", 0.15)
    eye_dx = float(rng.uniform(15.0, 19.5))
    eye_rx = float(rng.uniform(5.8, 7.4))
    eye_ry = eye_rx * (float(rng.uniform(0.32, 0.4)) if narrow else float(rng.uniform(0.46, 0.6)))
    bushy = maybe("Bushy_Eyebrows", 0.35 if male else 0.15)
    arched = maybe("Arched_Eyebrows", 0.15 if male else 0.45)
    big_nose = maybe("Big_Nose", 0.2)
    pointy = maybe("Pointy_Nose", 0.25)
    big_lips = maybe("Big_Lips", 0.2)
    nose_len = float(rng.uniform(18.0, 23.0) if big_nose else rng.uniform(14.0, 18.5))
    nose_w = float(rng.uniform(11.0, 14.0) if big_nose else rng.uniform(7.5, 10.5)) * (0.85 if pointy else 1.0)
    lip = float(rng.uniform(3.4, 4.4) if big_lips else rng.uniform(1.8, 2.9))

    # facial hair and makeup
    beard = _pick(rng, BEARDS, (0.45, 0.2, 0.15, 0.2)) if male else "none"
    traits.update({"stubble": {"5_o_Clock_Shadow"}, "goatee": {"Goatee"}, "full": {"Goatee"}}.get(beard, set()))
    if male and (beard == "full" or u() < 0.3):
        traits.add("Mustache")
    if male and style != "bald":
        maybe("Sideburns", 0.3)
    if not traits & {"5_o_Clock_Shadow", "Goatee", "Mustache"}:
        traits.add("No_Beard")
    makeup = (not male) and maybe("Heavy_Makeup", 0.4)
    lipstick = makeup or ((not male) and u() < 0.35)
    if lipstick:
        traits.add("Wearing_Lipstick")
    # Attractive is not a coin of its own (no pixel would show it): raters' "attractive" faces lack these marks,
    # each of which is drawn, so the label is read off the face like the others.
    if not traits & _UNATTRACTIVE:
        traits.add("Attractive")

    natural_lips = mix(skin, (176, 74, 78), 0.45)
    return Identity(
        name=identity_name(index),
        group=group,
        base_age=base_age,
        traits=frozenset(traits),
        skin=skin,
        hair=hair,
        iris=_pick(rng, _IRIS),
        lips=_pick(rng, _LIPSTICK) if lipstick else natural_lips,
        brow=mix(hair, (20, 16, 14), 0.35),
        frame=_pick(rng, _FRAMES),
        hat=_pick(rng, _HATS),
        metal=_pick(rng, _METALS),
        eyeshadow=_pick(rng, _EYESHADOW) if makeup else None,
        hair_style=style,
        hair_volume=hair_volume,
        hairline=-face_h * float(rng.uniform(0.8, 0.9) if "Receding_Hairline" in traits else rng.uniform(0.56, 0.68)),
        beard=beard,
        face_w=face_w,
        face_h=face_h,
        jaw=jaw,
        eye_dx=eye_dx,
        eye_y=-0.14 * face_h + float(rng.uniform(-1.5, 1.5)),
        eye_rx=eye_rx,
        eye_ry=eye_ry,
        brow_gap=float(rng.uniform(7.0, 9.0) if male else rng.uniform(8.5, 11.0)),
        brow_width=(float(rng.uniform(3.2, 4.2)) if bushy else float(rng.uniform(1.6, 2.4))) * (1.1 if male else 0.9),
        brow_arch=float(rng.uniform(2.5, 4.0)) if arched else float(rng.uniform(0.3, 1.5)),
        nose_len=nose_len,
        nose_w=nose_w,
        mouth_drop=float(rng.uniform(13.0, 17.0)),
        mouth_w=float(rng.uniform(11.0, 15.5)),
        lip_up=lip * 0.85,
        lip_low=lip * 1.15,
        glasses_p=_pick(rng, (0.0, 0.5, 1.0), (0.55, 0.25, 0.2)),
        hat_p=_pick(rng, (0.0, 0.35), (0.6, 0.4)),
        earrings_p=0.05 if male else _pick(rng, (0.0, 0.8), (0.35, 0.65)),
        necklace_p=_pick(rng, (0.0, 0.6), (0.8, 0.2) if male else (0.5, 0.5)),
        necktie_p=_pick(rng, (0.0, 0.6), (0.6, 0.4)) if male else 0.0,
        frame_round=u() < 0.5,
        hat_brim=u() < 0.6,
        earring_hoop=u() < 0.5,
    )
