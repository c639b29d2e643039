"""The photo around the face: cluttered background, where the face lands, and camera effects.

Why clutter and camera effects: a detector or aligner trained or tested on these photos must find
the face among edges and colours that are not a face, under uneven light, blur and sensor noise,
and the same identity must look different from photo to photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceops.sample.canvas import Placement

__all__ = ["Camera", "draw_background", "place_face", "draw_camera", "apply_camera"]

#: Blur above this Gaussian sigma (px) is labelled ``Blurry``.
BLURRY_SIGMA = 1.2


@dataclass(frozen=True)
class Camera:
    """Photometric nuisances of one photo.

    Attributes:
        gain: overall brightness multiplier.
        gradient: strength of a linear light falloff across the frame (0 = even light).
        direction: direction of that falloff, radians.
        cast: per-channel (B, G, R) colour-cast multipliers.
        blur: Gaussian blur sigma in pixels (0 = sharp).
        noise: sensor-noise standard deviation in grey levels.
    """

    gain: float
    gradient: float
    direction: float
    cast: tuple[float, float, float]
    blur: float
    noise: float

    @property
    def blurry(self) -> bool:
        """Whether the photo counts as ``Blurry``."""
        return self.blur >= BLURRY_SIGMA


def draw_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random colour field with random shapes on it.

    Returns:
        BGR uint8 [height, width, 3].
    """
    grid = rng.uniform(20, 235, size=(int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3)).astype(np.float32)
    image = np.ascontiguousarray(cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.uint8))
    side = min(height, width)
    for _ in range(int(rng.integers(6, 20))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        kind = int(rng.integers(5))
        x, y = int(rng.integers(width)), int(rng.integers(height))
        size = int(rng.integers(side // 20 + 2, side // 3 + 3))
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + size, y + int(rng.integers(2, size + 1))), colour, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), size // 2, colour, -1, cv2.LINE_AA)
        elif kind == 2:
            end = (x + int(rng.integers(-size, size + 1)), y + int(rng.integers(-size, size + 1)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(1, 6)), cv2.LINE_AA)
        elif kind == 3:
            pts = rng.integers(-size, size + 1, size=(int(rng.integers(3, 7)), 2)) + np.array([x, y])
            cv2.fillPoly(image, [pts.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            axes = (size // 2 + 1, int(rng.integers(1, size // 2 + 2)))
            cv2.ellipse(image, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, int(rng.integers(1, 4)))
    return image


def place_face(
    rng: np.random.Generator,
    box: tuple[float, float, float],
    height: int,
    width: int,
    *,
    max_angle_deg: float = 20.0,
    max_yaw: float = 0.18,
    fill: tuple[float, float] = (0.45, 0.85),
) -> Placement:
    """Random scale, in-plane rotation, pseudo-yaw and position that keep the head inside the photo.

    Args:
        rng: randomness for this photo.
        box: the head's extent in face units, ``(half_width, top, bottom)`` (see ``head.head_box``).
        height, width: photo size in pixels.
        max_angle_deg: largest in-plane rotation either way.
        max_yaw: largest pseudo head turn (see :class:`~faceops.sample.canvas.Placement`).
        fill: range of the head's height as a fraction of the photo's shorter side.

    Returns:
        The placement; every point of ``box`` maps at least 2 px inside the frame.
    """
    half_w, top, bottom = box
    angle = float(np.deg2rad(rng.uniform(-max_angle_deg, max_angle_deg)))
    yaw = float(rng.uniform(-max_yaw, max_yaw))
    corners = np.array([[-half_w, top], [half_w, top], [half_w, bottom], [-half_w, bottom]])
    unit = Placement(scale=1.0, angle=angle, cx=0.0, cy=0.0).to_image(corners)  # [4, 2] at scale 1
    lo, hi = unit.min(axis=0), unit.max(axis=0)
    scale = float(rng.uniform(*fill)) * min(height, width) / (bottom - top)
    scale = min(scale, (width - 4) / (hi[0] - lo[0]), (height - 4) / (hi[1] - lo[1]))
    slack = np.maximum(np.array([width - 4, height - 4]) - (hi - lo) * scale, 0.0)  # room left to move, [2]
    cx, cy = (2.0 - lo * scale + rng.random(2) * slack).tolist()
    return Placement(scale=scale, angle=angle, cx=cx, cy=cy, yaw=yaw)


def draw_camera(rng: np.random.Generator) -> Camera:
    """Random light, colour cast, blur (for about a third of the photos) and sensor noise."""
    return Camera(
        gain=float(rng.uniform(0.75, 1.2)),
        gradient=float(rng.uniform(0.0, 0.45)),
        direction=float(rng.uniform(0.0, 2 * np.pi)),
        cast=tuple(float(c) for c in rng.uniform(0.92, 1.08, 3)),
        blur=float(rng.uniform(0.5, 2.2)) if rng.random() < 0.35 else 0.0,
        noise=float(rng.uniform(1.0, 6.0)),
    )


def apply_camera(rng: np.random.Generator, image: np.ndarray, camera: Camera) -> np.ndarray:
    """Light, blur and noise on a BGR uint8 image [H, W, 3]; geometry (and so the landmarks) is unchanged.

    Returns:
        A new BGR uint8 image [H, W, 3].
    """
    h, w = image.shape[:2]
    ramp = np.cos(camera.direction) * np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :] + np.sin(
        camera.direction
    ) * np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]  # [H, W]
    light = camera.gain * (1.0 + camera.gradient * ramp)
    out = cv2.multiply(image, cv2.merge([light * c for c in camera.cast]), dtype=cv2.CV_32F)  # [H, W, 3]
    if camera.blur > 0.0:
        out = cv2.GaussianBlur(out, (0, 0), camera.blur)
    # grey sensor noise in 2x2 grains: half the random numbers, and grain looks like a real sensor's
    grain = camera.noise * rng.standard_normal(((h + 1) // 2, (w + 1) // 2), dtype=np.float32)
    grain = cv2.resize(grain, (w, h), interpolation=cv2.INTER_NEAREST)
    return cv2.add(out, cv2.merge([grain, grain, grain]), dtype=cv2.CV_8U)  # rounds and saturates to 0..255
