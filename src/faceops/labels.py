"""The label contract shared by every stage: names, orders and the sample-id rule.

One definition of each contract lives here (see docs/ARCHITECTURE.md). Manifests, shard sidecars
and pseudo-label files all use these names; a missing label is ``None`` and is masked, never read
as a negative.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = [
    "EXPRESSIONS",
    "CELEBA_ATTRIBUTES",
    "LANDMARK_NAMES",
    "LANDMARK_COLUMNS",
    "ARCFACE_TEMPLATE_112",
    "sample_id",
]

#: Expression classes; the ``expression`` label is an index into this tuple.
EXPRESSIONS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "sadness",
    "surprise",
    "fear",
    "disgust",
    "anger",
)

#: The 40 CelebA binary attributes, in CelebA's own column order (labels are 0/1 or None).
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)  # fmt: skip

#: Order of the 5 landmarks (image left/right as seen, not the subject's).
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")

#: CSV column names for the 5 landmarks: lx1, ly1, ..., lx5, ly5.
LANDMARK_COLUMNS: tuple[str, ...] = tuple(f"l{axis}{i}" for i in range(1, 6) for axis in "xy")

#: ArcFace/insightface 5-point template for a 112x112 aligned face, [5, 2] (x, y) in pixels.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_TEMPLATE_112.setflags(write=False)


def sample_id(source: str, relpath: str) -> str:
    """Stable sample id from a source name and a POSIX relative path.

    Why hashed: WebDataset splits keys on dots and paths may hold any character; a 16-hex
    prefix of sha1 is stable across runs and versions and collision-safe at our scale.
    The source name is kept readable as a prefix.

    Args:
        source: source name (``[a-z0-9_]+``).
        relpath: path of the file relative to the source root, with ``/`` separators.

    Returns:
        ``"<source>_<16 hex>"``; never contains a dot.
    """
    digest = hashlib.sha1(f"{source}/{relpath}".encode("utf-8")).hexdigest()[:16]
    return f"{source}_{digest}"
