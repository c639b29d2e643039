"""SwinFace's task layout as data: which analysis heads exist, how they are grouped, what they read.

SwinFace (Qin et al., arXiv:2308.11509; facts from lxq1000/SwinFace, MIT) shares one backbone between
face recognition and 42 analysis outputs computed by 11 subnets. This module is the single source of
truth for that layout: the model builds its heads from it, and the loss and evaluation code map label
keys to heads through it, so the three can never disagree.

Naming rule: an output is named after the label it is trained on. Attributes use the
``faceops.labels.CELEBA_ATTRIBUTES`` names verbatim (SwinFace's "Gender" head is the CelebA ``Male``
head: class 1 = male; both age/gender sets and CelebA supervise it through the ``Male`` label),
age and expression use ``"Age"`` / ``"Expression"`` and read the ``age`` / ``expression`` labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from faceops.labels import CELEBA_ATTRIBUTES, EXPRESSIONS

__all__ = [
    "HeadSpec",
    "SubnetSpec",
    "SWINFACE_SUBNETS",
    "ANALYSIS_HEADS",
    "RECOGNITION",
    "RECOGNITION_LABEL",
    "OUTPUT_NAMES",
    "head_by_name",
]

#: Output key of the identity embedding and the label key that supervises it (via a margin head).
RECOGNITION = "Recognition"
RECOGNITION_LABEL = "identity"


@dataclass(frozen=True)
class HeadSpec:
    """One analysis output.

    Attributes:
        name: key in the model's output dict.
        label: key of the supervising label in manifests / shard json (``faceops.labels``).
        num_outputs: width of the head's Linear layer (1 for regression, k for k classes).
        kind: ``"regression"`` (annealed age loss) or ``"classification"`` (cross-entropy).
    """

    name: str
    label: str
    num_outputs: int
    kind: Literal["regression", "classification"]


@dataclass(frozen=True)
class SubnetSpec:
    """One MLCA subnet: a fused-feature branch shared by the heads of related tasks."""

    name: str
    heads: tuple[HeadSpec, ...]


def _binary(*attributes: str) -> tuple[HeadSpec, ...]:
    """Two-class heads for CelebA attributes (label 0/1), named after the attribute."""
    return tuple(HeadSpec(a, a, 2, "classification") for a in attributes)


#: The 11 subnets in SwinFace's order, with their heads in SwinFace's order.
SWINFACE_SUBNETS: tuple[SubnetSpec, ...] = (
    SubnetSpec("gender", _binary("Male")),
    SubnetSpec("age", (HeadSpec("Age", "age", 1, "regression"), *_binary("Young"))),
    SubnetSpec(
        "expression",
        (HeadSpec("Expression", "expression", len(EXPRESSIONS), "classification"), *_binary("Smiling")),
    ),
    SubnetSpec(
        "global",
        _binary("Attractive", "Blurry", "Chubby", "Heavy_Makeup", "Oval_Face", "Pale_Skin"),
    ),
    SubnetSpec(
        "hair",
        _binary(
            "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair",
            "Receding_Hairline", "Straight_Hair", "Wavy_Hair", "Wearing_Hat",
        ),  # fmt: skip
    ),
    SubnetSpec(
        "eyes",
        _binary("Arched_Eyebrows", "Bags_Under_Eyes", "Bushy_Eyebrows", "Eyeglasses", "Narrow_Eyes"),
    ),
    SubnetSpec("nose", _binary("Big_Nose", "Pointy_Nose")),
    SubnetSpec("cheek", _binary("High_Cheekbones", "Rosy_Cheeks", "Wearing_Earrings", "Sideburns")),
    SubnetSpec(
        "mouth",
        _binary(
            "5_o_Clock_Shadow", "Big_Lips", "Mouth_Slightly_Open", "Mustache", "Wearing_Lipstick", "No_Beard",
        ),  # fmt: skip
    ),
    SubnetSpec("chin", _binary("Double_Chin", "Goatee")),
    SubnetSpec("neck", _binary("Wearing_Necklace", "Wearing_Necktie")),
)

#: All 42 analysis heads, flattened in subnet order.
ANALYSIS_HEADS: tuple[HeadSpec, ...] = tuple(h for s in SWINFACE_SUBNETS for h in s.heads)

#: The 43 keys of the full model's output dict.
OUTPUT_NAMES: tuple[str, ...] = (RECOGNITION, *(h.name for h in ANALYSIS_HEADS))

_HEADS_BY_NAME = {h.name: h for h in ANALYSIS_HEADS}
assert len(_HEADS_BY_NAME) == len(ANALYSIS_HEADS) == 42, f"duplicate head names in {ANALYSIS_HEADS}"
assert {h.label for h in ANALYSIS_HEADS} == {*CELEBA_ATTRIBUTES, "age", "expression"}, (
    "every CelebA attribute, age and expression must have exactly one head"
)


def head_by_name(name: str) -> HeadSpec:
    """Look up an analysis head by its output name.

    Raises:
        KeyError: ``name`` is not one of the 42 analysis outputs (the message lists them).
    """
    try:
        return _HEADS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown analysis head {name!r}; expected one of {sorted(_HEADS_BY_NAME)}") from None
