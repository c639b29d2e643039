"""Robustness of trained models to universal adversarial perturbations (SGA, ICCV 2023; SPGD; random noise).

Modules: ``uap`` (the attack: clamped cross-entropy, SGA and SPGD steps, fooling rate), ``targets`` (frozen
classifiers over [0, 1] images from our models: a classification head, or identity by the nearest class
centre), ``study`` (SGA vs SPGD vs random noise on held-out images: the ``robustness`` stage's call) and
``surrogate`` (a small CNN for the CPU-tiny benches; imported by name, it pulls in the training loop).
"""

from faceops.robust.study import METHODS, AttackResult, attack_model, compare_attacks, perturbation_image
from faceops.robust.targets import IDENTITY, NearestClassClassifier, OutputClassifier, class_centres, model_classifiers
from faceops.robust.uap import (
    UAPConfig,
    clamped_cross_entropy,
    fooling_rate,
    predict_labels,
    random_sign_perturbation,
    sga_step,
    spgd_step,
    train_uap,
    uap_gradient,
)  # fmt: skip

__all__ = [
    "METHODS", "AttackResult", "attack_model", "compare_attacks", "perturbation_image",
    "IDENTITY", "NearestClassClassifier", "OutputClassifier", "class_centres", "model_classifiers",
    "UAPConfig", "clamped_cross_entropy", "fooling_rate", "predict_labels", "random_sign_perturbation", "sga_step",
    "spgd_step", "train_uap", "uap_gradient",
]  # fmt: skip
