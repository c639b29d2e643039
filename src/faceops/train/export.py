"""The exported model record, rebuilding a model from it, initialisation.

An exported model (``faceops.io.checkpoint.MODEL_FILE``, kind ``"model"``) is what evaluation and
inference read. It holds ``model_name`` + ``model_args`` (``create_model`` rebuilds the network),
``state_dict``, ``identities`` (training classes), ``embedding_size``, the input normalisation
(``image_mean`` / ``image_std``, see ``faceops.train.batch.normalize_images``), ``step`` and ``params``.
A disabled pre-training writes a record with ``enabled: False`` and no weights, so the DVC graph keeps
the same outputs whether or not pre-training runs; ``train`` then starts from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from faceops.io.checkpoint import load_checkpoint
from faceops.models import create_model, current_model_name
from faceops.train.batch import IMAGE_MEAN, IMAGE_STD

__all__ = ["model_record", "disabled_record", "build_model", "load_trained_model", "init_backbone", "init_head_bias"]


def model_record(
    model: nn.Module,
    model_name: str,
    model_args: Mapping[str, Any],
    *,
    identities: Sequence[str],
    step: int,
    params: Mapping[str, Any],
    init: str,
) -> dict[str, Any]:
    """The exported-model record (save it with ``save_checkpoint(..., kind="model")``).

    Args:
        model: the trained network (its ``num_features`` is the embedding size).
        model_name, model_args: how ``create_model`` built it.
        identities: class names of the recognition head, in class order.
        step: optimizer steps trained.
        params: the resolved params section the run used (plain JSON types).
        init: where the weights started (``"scratch"`` or ``"pretrain"``).
    """
    return {
        "enabled": True,
        "model_name": model_name,
        "model_args": dict(model_args),
        "state_dict": model.state_dict(),
        "identities": list(identities),
        "embedding_size": int(model.num_features),
        "image_mean": IMAGE_MEAN,
        "image_std": IMAGE_STD,
        "step": step,
        "params": dict(params),
        "init": init,
    }


def disabled_record(params: Mapping[str, Any]) -> dict[str, Any]:
    """The record a disabled stage writes instead of weights (``enabled: False``)."""
    return {"enabled": False, "model_name": None, "model_args": {}, "state_dict": {}, "identities": [], "step": 0,
            "params": dict(params)}  # fmt: skip


def build_model(record: Mapping[str, Any]) -> nn.Module:
    """Rebuild the network of an exported record with its weights, in eval mode.

    A record written before a model was renamed (``model_name`` ``swinface_tiny``, ...) builds the model
    under its current name (``faceops.models.current_model_name``): same architecture, same weights.

    Raises:
        ValueError: the record says the stage was disabled (it holds no weights).
    """
    if not record.get("enabled", False):
        raise ValueError("this model file was written by a disabled stage and holds no weights; enable the stage")
    model = create_model(current_model_name(record["model_name"]), **record["model_args"])
    model.load_state_dict(record["state_dict"])
    return model.eval()


def load_trained_model(path: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Read an exported model file safely and rebuild its network.

    Returns:
        ``(model, record)``: the model in eval mode, and the record (identities, embedding size,
        normalisation, params, ...).
    """
    record = load_checkpoint(path, kind="model", map_location=map_location)
    return build_model(record), record


def init_backbone(model: nn.Module, record: Mapping[str, Any]) -> list[str]:
    """Copy a pre-trained model's weights into ``model`` (SwinFace initialises its backbone this way).

    Every tensor of the pre-trained (recognition-only) model must exist in ``model`` with the same
    shape; ``model``'s other tensors (the analysis subnets) keep their fresh initialisation.

    Returns:
        The names of the copied tensors.

    Raises:
        ValueError: the pre-trained model does not fit (unknown names or other shapes), e.g.
            ``pretrain.model`` is Swin-T while ``train.model`` is the tiny variant.
    """
    state = record["state_dict"]
    own = model.state_dict()
    unknown = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if unknown or mismatched:
        raise ValueError(
            f"pre-trained {record.get('model_name')!r} does not fit this model: {len(unknown)} unknown tensors "
            f"{unknown[:3]}, {len(mismatched)} with other shapes {mismatched[:3]}; pick matching variants "
            "(e.g. pretrain.model swinface_cpu_rec with train.model swinface_cpu; a promoted model of the same "
            "variant as train.model)"
        )
    model.load_state_dict(state, strict=False)
    return sorted(state)


def init_head_bias(model: nn.Module, head: str, value: float) -> None:
    """Start a 1-output regression head at ``value`` (e.g. ``"Age"`` at the mean training age).

    Deviation from SwinFace, which starts the age head at 0: with a few hundred CPU steps at lr 1e-3,
    AdamW moves a bias by about 0.1 and the age loss (half squared error in years) would dominate the
    total for the whole run. Starting at the mean makes the first loss the label variance instead.

    Raises:
        KeyError: ``model`` has no single-output head named ``head``.
    """
    layers = [m for name, m in model.named_modules() if name.endswith(f"heads.{head}") and isinstance(m, nn.Linear)]
    if len(layers) != 1 or layers[0].out_features != 1 or layers[0].bias is None:
        raise KeyError(f"model has no single-output head {head!r} with a bias (found {len(layers)} layers named so)")
    with torch.no_grad():
        layers[0].bias.fill_(value)
