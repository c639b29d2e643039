"""AIN's target objective as one ``LossTerm``: pseudo-identities + adversarial mutual information.

Wang and Deng, "Adaptive Face Recognition Using Adversarial Information Network", IEEE TIP vol. 31,
pp. 4909-4921, 2022 (arXiv 2305.13605). Each step appends a batch of *target* images (unlabeled faces of
the other domain; rows carry a pseudo-identity when the round's clustering gave them one) to the one
forward pass, and returns

    pseudo_weight x L_margin(pseudo-labelled target rows; W_t) + mi_weight x ramp(progress) x I(all target rows)

``W_t`` is the target cosine classifier (a :class:`faceops.losses.MarginSoftmax` with one centre per
pseudo-identity, initialised from the L2-normalised cluster centroids). ``I`` is the batch mutual
information of ``softmax(mi_scale x cos(f, W_t))`` (:func:`faceops.adapt.information.mutual_information`),
reached by the embeddings through a gradient-reversal layer: ``W_t`` descends ``I`` (the classifier
minimises it), the feature extractor ascends it (maximises it), in one backward pass.

Stated in the abstract: the pseudo-labels from a GCN, the minimax on the mutual information between the
target classifier and the feature extractor. Our reconstruction (no public code): the margin loss on the
pseudo-labelled rows through ``W_t``, centroid initialisation, the temperature ``mi_scale``, the equal
weighting of the two entropies, both weights and the ramp.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from faceops.adapt.information import mutual_information
from faceops.losses import MarginSoftmax, reverse_gradient
from faceops.models.tasks import RECOGNITION, RECOGNITION_LABEL
from faceops.train.batch import normalize_images
from faceops.train.mixing import MixedBatches
from faceops.train.terms import LossTerm, TermInputs, constant

__all__ = ["AdversarialInformationTerm"]


class AdversarialInformationTerm(LossTerm):
    """Target rows from ``target``, their pseudo-identity margin loss and the reversed mutual information.

    Args:
        target: endless stream of target batches whose ``identity`` targets index the pseudo-identities
            (``-1``/masked: no pseudo-label); its position is the term's checkpointed extra state.
        centroids: [K, D] mean embedding of each pseudo-identity (K >= 2), the initial ``W_t``.
        name: logged as ``loss/<name>``.
        pseudo_weight: weight of the pseudo-label margin loss.
        mi_weight: weight of the mutual information at full ramp.
        mi_scale: inverse temperature of the posteriors the information is measured on.
        mi_schedule: progress in [0, 1) -> multiplier of ``mi_weight`` (``faceops.train.terms`` ramps).
        margin_scale, margin_cos: CosFace ``s`` and ``m`` of the margin loss through ``W_t``.
    """

    def __init__(
        self, target: MixedBatches, centroids: torch.Tensor, *, name: str = "ain", pseudo_weight: float = 1.0,
        mi_weight: float = 1.0, mi_scale: float = 16.0, mi_schedule: Callable[[float], float] | None = None,
        margin_scale: float = 32.0, margin_cos: float = 0.2,
    ) -> None:  # fmt: skip
        super().__init__(name, 1.0)
        if centroids.dim() != 2 or centroids.shape[0] < 2:
            raise ValueError(f"AIN needs centroids [K, D] of K >= 2 pseudo-identities, got {tuple(centroids.shape)}")
        for key, value in {"pseudo_weight": pseudo_weight, "mi_weight": mi_weight, "mi_scale": mi_scale}.items():
            if not value >= 0:
                raise ValueError(f"AIN {key} must be >= 0, got {value}")
        self.classifier = MarginSoftmax(centroids.shape[0], centroids.shape[1], s=margin_scale, m_cos=margin_cos)
        with torch.no_grad():
            self.classifier.weight.copy_(F.normalize(centroids.float(), dim=1))
        self.target = target
        self.pseudo_weight, self.mi_weight, self.mi_scale = float(pseudo_weight), float(mi_weight), float(mi_scale)
        self.mi_schedule = mi_schedule or constant
        self._labels: torch.Tensor | None = None

    def extra_rows(self, images: torch.Tensor, batch: object) -> torch.Tensor:
        """The next target batch, normalised like ``images``; its pseudo-labels wait for :meth:`forward`."""
        rows = next(self.target)
        identity = rows.targets.get(RECOGNITION_LABEL)
        present = rows.masks.get(RECOGNITION_LABEL)
        count = rows.images.shape[0]
        self._labels = torch.full((count,), -1) if identity is None else torch.where(present, identity, -1)
        return normalize_images(rows.images.to(images.device, non_blocking=True))

    def information(self, embeddings: torch.Tensor, *, reverse: bool = True) -> torch.Tensor:
        """Mutual information of ``W_t``'s posteriors on ``embeddings`` [N, D], reversed on the way back
        to the embeddings when ``reverse`` (``W_t`` itself always gets the plain gradient)."""
        features = reverse_gradient(embeddings) if reverse else embeddings
        cos = F.linear(F.normalize(features.float()), F.normalize(self.classifier.weight))  # [N, K]
        return mutual_information(torch.softmax(self.mi_scale * cos, dim=1))

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        if self._labels is None:
            raise RuntimeError(f"loss term {self.name!r}: forward without extra_rows; it must run inside fit's step")
        embeddings = inputs.outputs[RECOGNITION][inputs.rows]  # [T, D]
        labels, self._labels = self._labels.to(embeddings.device), None
        pseudo = self.classifier(embeddings.float(), labels)
        ramp = self.mi_weight * float(self.mi_schedule(inputs.progress))
        return self.pseudo_weight * pseudo + ramp * self.information(embeddings)

    def get_extra_state(self) -> dict:
        """The target stream's position, so a resumed run appends the rows an uninterrupted one would."""
        return {"target": self.target.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.target.load_state_dict(state["target"])
