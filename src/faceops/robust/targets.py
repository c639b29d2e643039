"""Frozen classifiers over images in [0, 1] built from our models: what a universal perturbation attacks.

A faceops model takes images normalised as in training (``(x - 0.5) / 0.5``, faceops.train.batch) and
returns a dict of outputs. :class:`OutputClassifier` turns one classification output (``Expression``, an
attribute head, ``logits`` of ``cnn_tiny``) or a plain tensor output (a timm model, with its own mean and
std) into logits; :class:`NearestClassClassifier` predicts identity as the nearest class centre of the
L2-normalised embedding (cosine logits), since the exported models keep no identity classifier.
:func:`model_classifiers` builds the named ones for the ``robustness`` stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceops.train.batch import IMAGE_MEAN, IMAGE_STD

__all__ = ["IDENTITY", "OutputClassifier", "NearestClassClassifier", "class_centres", "model_classifiers"]

#: The target name of identity prediction by the nearest class centre.
IDENTITY = "identity"


class OutputClassifier(nn.Module):
    """Logits [B, C] of one output of ``model`` for images in [0, 1] [B, 3, H, W].

    Args:
        model: a frozen network (put in eval mode here).
        output: the key of a dict-output model, or None when the model returns the logits tensor.
        mean, std: the model's input normalisation (a scalar or one value per channel).
    """

    def __init__(self, model: nn.Module, output: str | None, mean: float | Sequence[float] = IMAGE_MEAN,
                 std: float | Sequence[float] = IMAGE_STD):  # fmt: skip
        super().__init__()
        self.model, self.output = model.eval(), output
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model((images - self.mean) / self.std)
        return out if self.output is None else out[self.output]


class NearestClassClassifier(OutputClassifier):
    """Identity logits ``scale * cos(embedding, centre_c)`` [B, C] from an embedding output.

    Args:
        model: the embedding network.
        centres: class centres [C, D] (L2-normalised here).
        output: the embedding's key in the model's outputs.
        scale: the cosine logits' scale (a temperature for the attack's cross-entropy; CosFace-like).
    """

    def __init__(self, model: nn.Module, centres: torch.Tensor, output: str = "Recognition", scale: float = 32.0):
        super().__init__(model, output)
        self.register_buffer("centres", F.normalize(centres.float(), dim=1))
        self.scale = scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(super().forward(images).float(), dim=1) @ self.centres.T


def class_centres(embeddings: torch.Tensor, labels: Sequence[str | None]) -> tuple[torch.Tensor, list[str]]:
    """Mean L2-normalised embedding [C, D] of each labelled class, and the class names (sorted).

    Raises:
        ValueError: fewer than two labelled classes.
    """
    classes = sorted({label for label in labels if label is not None})
    if len(classes) < 2:
        raise ValueError(f"identity prediction needs >= 2 labelled identities, got {len(classes)}")
    unit = F.normalize(embeddings.float(), dim=1)
    index = {name: i for i, name in enumerate(classes)}
    rows = torch.tensor([index[label] for label in labels if label is not None])
    members = unit[torch.tensor([label is not None for label in labels])]
    centres = torch.zeros(len(classes), unit.shape[1]).index_add_(0, rows, members)
    return F.normalize(centres, dim=1), classes


@torch.no_grad()
def model_classifiers(
    model: nn.Module, names: Sequence[str], images: torch.Tensor, identities: Sequence[str | None], *,
    batch_size: int = 64, device: torch.device | str = "cpu",
) -> dict[str, nn.Module]:  # fmt: skip
    """The named classifiers of a faceops model: its classification heads, and ``identity``.

    Args:
        model: an exported faceops model (dict outputs with ``Recognition``), on ``device``.
        names: output names (``Expression``, ``Male``, ...) and/or :data:`IDENTITY`.
        images: uint8 faces [N, 3, H, W]; their clean embeddings give the identity centres.
        identities: identity label of each image (None where unknown).

    Raises:
        ValueError: a name is neither an output of the model with >= 2 classes nor ``identity``.
    """
    probe = model.eval()(((images[:1].to(device).float() / 255.0) - IMAGE_MEAN) / IMAGE_STD)
    heads = sorted(k for k, v in probe.items() if v.ndim == 2 and v.shape[1] >= 2 and k != "Recognition")
    out: dict[str, nn.Module] = {}
    for name in names:
        if name == IDENTITY:
            embedder = OutputClassifier(model, "Recognition").to(device)
            embeddings = torch.cat([embedder(images[i : i + batch_size].to(device).float() / 255.0).cpu()
                                    for i in range(0, len(images), batch_size)])  # fmt: skip
            out[name] = NearestClassClassifier(model, class_centres(embeddings, identities)[0]).to(device)
        elif name in heads:
            out[name] = OutputClassifier(model, name).to(device)
        else:
            raise ValueError(f"unknown attack target {name!r}; expected {IDENTITY!r} or a classification output "
                             f"of the model: {heads}")  # fmt: skip
    return out
