"""Evaluation metrics with flat ``/``-separated keys (``verif/acc``, ``age/eps``, ``group/ser``, ...).

- `faceops.eval.verification`: pairs, cosine scores, 10-fold accuracy, ROC/AUC, TAR@FAR.
- `faceops.eval.tasks`: expression, gender, age (MAE, LAP epsilon-error), 40 attributes.
- `faceops.eval.groups`: per-group accuracy, mean, std, skewed error ratio (RFW protocol).
- `faceops.eval.evaluate`: a model's predictions over a data stream, scored by the above.
- `faceops.eval.bins`: verification on insightface ``.bin`` sets.
- `faceops.eval.model`: ``evaluate_model``, the ``evaluate`` stage's work (shard splits and ``.bin`` sets);
  these three import torch, so this package does not import them.

Each ``*_metrics`` function returns its own keys with label counts; `merge_metrics` joins them into
one dict for a run's metrics file.
"""

from faceops.eval.groups import group_metrics, group_verification_metrics, summarize_groups
from faceops.eval.tasks import (
    DEFAULT_AGE_SIGMA,
    age_metrics,
    attribute_metrics,
    balanced_accuracy,
    confusion_matrix,
    epsilon_error,
    expression_metrics,
    gender_metrics,
    label_mask,
    merge_metrics,
)
from faceops.eval.verification import (
    DEFAULT_FARS,
    auc,
    cosine_scores,
    far_key,
    kfold_accuracy,
    make_pairs,
    roc,
    tar_at_far,
    verification_metrics,
)

__all__ = [
    "DEFAULT_AGE_SIGMA",
    "DEFAULT_FARS",
    "age_metrics",
    "attribute_metrics",
    "auc",
    "balanced_accuracy",
    "confusion_matrix",
    "cosine_scores",
    "epsilon_error",
    "expression_metrics",
    "far_key",
    "gender_metrics",
    "group_metrics",
    "group_verification_metrics",
    "kfold_accuracy",
    "label_mask",
    "make_pairs",
    "merge_metrics",
    "roc",
    "summarize_groups",
    "tar_at_far",
    "verification_metrics",
]
