"""Losses for faceops models: margin softmax (CosFace/ArcFace/Partial FC), SwinFace's age and total loss, and the
gradient reversal that adversarial terms (faceops.adapt, faceops.fairness) train through."""

from faceops.losses.age import AnnealedAgeLoss, annealed_age_loss
from faceops.losses.margin import MarginSoftmax, margin_logits
from faceops.losses.multitask import SwinFaceLoss
from faceops.losses.reversal import reverse_gradient

__all__ = ["margin_logits", "MarginSoftmax", "annealed_age_loss", "AnnealedAgeLoss", "SwinFaceLoss",
           "reverse_gradient"]  # fmt: skip
