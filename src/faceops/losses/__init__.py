"""Losses for faceops models: margin softmax (CosFace/ArcFace/Partial FC), SwinFace's age and total loss."""

from faceops.losses.age import AnnealedAgeLoss, annealed_age_loss
from faceops.losses.margin import MarginSoftmax, margin_logits
from faceops.losses.multitask import SwinFaceLoss

__all__ = ["margin_logits", "MarginSoftmax", "annealed_age_loss", "AnnealedAgeLoss", "SwinFaceLoss"]
