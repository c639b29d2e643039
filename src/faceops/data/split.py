"""Identity-disjoint train/val/test assignment by hashing the identity name.

Why a hash and not a shuffled list: the split of an identity depends on nothing but its name (and the
salt), so it is the same on every run, on every machine, whatever other identities exist and in
whatever order they arrive. Adding images or identities never moves an existing identity to another
split, and no identity can straddle two splits because the answer is a function of the identity alone.

Mapping: ``u = first 8 bytes of sha256(salt NUL identity) / 2**64`` is uniform in [0, 1); the splits
take consecutive intervals of [0, 1) in the fixed order :data:`SPLITS` with the given widths.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

__all__ = ["SPLITS", "UNLABELED_SPLIT", "assign_split", "identity_unit"]

#: The split names, in the order their intervals are laid out on [0, 1).
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Split for samples without an identity label: they cannot be placed identity-disjointly, so they
#: are kept apart rather than guessed into train/val/test.
UNLABELED_SPLIT = "unlabeled"

_FRACTION_TOLERANCE = 1e-6


def identity_unit(identity: str, *, salt: str = "") -> float:
    """The identity's position in [0, 1): uniform over names, stable across runs and versions.

    Args:
        identity: identity name (non-empty).
        salt: changes every position at once (a different but equally valid split).

    Raises:
        TypeError: ``identity`` or ``salt`` is not a string.
        ValueError: ``identity`` is empty.
    """
    if not isinstance(identity, str) or not isinstance(salt, str):
        raise TypeError(
            f"identity and salt must be strings, got {type(identity).__name__} and {type(salt).__name__}; "
            f"samples without an identity go to the {UNLABELED_SPLIT!r} split"
        )
    if not identity:
        raise ValueError(f"identity must be a non-empty name; samples without one go to the {UNLABELED_SPLIT!r} split")
    digest = hashlib.sha256(f"{salt}\0{identity}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _checked_fractions(fractions: Mapping[str, float]) -> list[tuple[str, float]]:
    unknown = sorted(set(fractions) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown split names {unknown}; allowed: {list(SPLITS)}")
    widths = [(name, float(fractions.get(name, 0.0))) for name in SPLITS]
    bad = {name: w for name, w in widths if not (math.isfinite(w) and 0.0 <= w <= 1.0)}
    if bad:
        raise ValueError(f"split fractions must lie in [0, 1], got {bad}")
    total = sum(w for _, w in widths)
    if abs(total - 1.0) > _FRACTION_TOLERANCE:
        raise ValueError(f"split fractions must sum to 1, got {dict(widths)} (sum {total:.6g})")
    return widths


def assign_split(identity: str, fractions: Mapping[str, float], *, salt: str = "") -> str:
    """The split (``train``/``val``/``test``) of one identity.

    Args:
        identity: identity name.
        fractions: split name -> fraction of identities (not of images), summing to 1; missing
            names count as 0, e.g. ``{"train": 0.7, "val": 0.1, "test": 0.2}``.
        salt: optional; a different salt reshuffles which identities go where.

    Returns:
        One of :data:`SPLITS` whose fraction is > 0.

    Raises:
        ValueError: unknown split names, fractions outside [0, 1] or not summing to 1, empty identity.
        TypeError: the identity is not a string (e.g. ``None``).
    """
    widths = _checked_fractions(fractions)
    u = identity_unit(identity, salt=salt)
    upper = 0.0
    for name, width in widths:
        upper += width
        if u < upper:
            return name
    # Fractions summing to 1 - tiny may leave u above the last bound: it belongs to the last non-empty split.
    return next(name for name, width in reversed(widths) if width > 0)
