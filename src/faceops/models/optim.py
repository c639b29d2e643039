"""Optimizer parameter groups that give a pre-trained backbone a smaller learning rate.

SwinFace (arXiv:2308.11509) fine-tunes its recognition-pre-trained backbone at lr/10 while the freshly
initialised analysis subnets and the margin head learn at the full lr; this helper builds exactly
those two groups from any model that can name its backbone parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch.nn as nn

__all__ = ["param_groups"]


def param_groups(
    model: nn.Module,
    lr: float,
    *,
    backbone_lr_scale: float = 0.1,
    weight_decay: float = 0.0,
    extra_head_modules: Iterable[nn.Module] = (),
) -> list[dict[str, Any]]:
    """Split trainable parameters into a ``backbone`` and a ``heads`` optimizer group.

    Args:
        model: a model with ``backbone_parameters()`` (e.g. ``SwinFace``); everything else it owns
            is a head parameter.
        lr: learning rate of the head group.
        backbone_lr_scale: backbone lr = ``lr * backbone_lr_scale`` (SwinFace: 0.1).
        weight_decay: weight decay of both groups (SwinFace applies AdamW's decay uniformly).
        extra_head_modules: modules outside ``model`` trained at the head lr, such as the
            ``MarginSoftmax`` class centres.

    Returns:
        Groups for ``torch.optim`` (each with ``name``, ``params``, ``lr``, ``weight_decay``); empty
        groups are left out, frozen parameters (``requires_grad=False``) are in no group.

    Raises:
        TypeError: ``model`` has no ``backbone_parameters()`` method.
    """
    if not callable(getattr(model, "backbone_parameters", None)):
        raise TypeError(
            f"{type(model).__name__} has no backbone_parameters() method; param_groups needs a model that "
            "names its backbone (e.g. faceops.models.swinface.SwinFace)"
        )
    backbone = [p for p in model.backbone_parameters() if p.requires_grad]
    backbone_ids = {id(p) for p in backbone}
    heads = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
    seen = {id(p) for p in heads} | backbone_ids
    for module in extra_head_modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                heads.append(p)
                seen.add(id(p))
    groups = [
        {"name": "backbone", "params": backbone, "lr": lr * backbone_lr_scale, "weight_decay": weight_decay},
        {"name": "heads", "params": heads, "lr": lr, "weight_decay": weight_decay},
    ]
    return [g for g in groups if g["params"]]
