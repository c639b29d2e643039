"""GABN debiasing: balance a face recogniser's gradient attention across demographic groups.

Method: Huang et al., "Gradient Attention Balance Network: Mitigating Face Recognition Racial Bias via
Gradient Attention", CVPR Workshops 2023 (TCV), pp. 38-47 (arXiv 2304.02284). It has no public code and only
its abstract was available to us: gradient attention maps (GAM) of the recogniser, an adversarial loss that
makes the maps of different races indistinguishable, and Top-N erasing of the most attended regions. How
each of these is computed here is our reconstruction (the modules say which parts):

- ``faceops.fairness.attention``: Grad-CAM maps (double-backprop ready), Top-N cells, erasing;
- ``faceops.fairness.terms``: the two ``LossTerm``s (group adversary, erased copies) and ``gabn_terms``, which
  the training job adds when ``train.gabn.enabled`` (or ``adapt.gabn.enabled``).

The fairness protocol that judges it (per-group accuracy, mean, std, skewed error ratio) is
``faceops.eval.groups``.
"""

from faceops.fairness.attention import erase_cells, gradient_attention, normalize_maps, top_n_cells
from faceops.fairness.terms import (
    AttentionAdversaryTerm, AttentionErasingTerm, FeatureTap, attention_maps, gabn_terms, shard_groups,
)  # fmt: skip

__all__ = [
    "AttentionAdversaryTerm", "AttentionErasingTerm", "FeatureTap", "attention_maps", "erase_cells", "gabn_terms",
    "gradient_attention", "normalize_maps", "shard_groups", "top_n_cells",
]  # fmt: skip
