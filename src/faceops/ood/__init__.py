"""Out-of-distribution scores and their label-free evaluation (Gscore), for monitoring new data.

Modules: ``metrics`` (AUROC as Mann-Whitney, meta-evaluation), ``scores`` (MSP, max-logit, energy,
Mahalanobis, kNN), ``mixture`` (BIC-selected 1-D Gaussian mixtures), ``gscore`` (the three reconstructed
Gscore variants behind one label-free function, and the OOD share), ``collect`` (which shard samples a
monitoring run reads and their model outputs), ``monitor`` (the ``monitor`` stage's verdicts and the
history table), and, imported by name since they pull in the face generator, ``shifts`` and ``gbench``
(Gbench-mini).
"""

from faceops.ood.gscore import GSCORE_METHODS, gscore, ood_share
from faceops.ood.metrics import auroc, fit_linear, meta_scores
from faceops.ood.mixture import Mixture, fit_mixture
from faceops.ood.scores import OOD_SCORES, ScoreInputs, energy, fit_score, max_logit, msp

__all__ = [
    "GSCORE_METHODS", "gscore", "ood_share",
    "auroc", "fit_linear", "meta_scores",
    "Mixture", "fit_mixture",
    "OOD_SCORES", "ScoreInputs", "energy", "fit_score", "max_logit", "msp",
]  # fmt: skip
