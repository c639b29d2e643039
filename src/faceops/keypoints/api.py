"""The ``keypoints`` stage's entry points: train from uint8 images, predict, save and restore.

Why a separate layer: the stage deals in uint8 HWC crops and files; the training loop in
:mod:`faceops.keypoints.sspcm` deals in normalised tensors. Here images are checked and normalised
(``(x / 255 - 0.5) / 0.5``, the project convention), networks are built, and the trained model
becomes a record of tensors and plain values that loads with ``torch.load(weights_only=True)``.

Images are uint8 arrays [N, H, W, 3] (RGB) of exactly ``config.input_size`` (height, width): crop
and resize them first (``faceops.align.crop``) and map points back with the crop's matrix.
Points are (x, y) pixels of those images, pixel centres at integers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from faceops.keypoints.sspcm import (
    EpochHook,
    SSPCMConfig,
    build_nets,
    fit_sspcm,
    fit_supervised,
    predict_points,
    steps_per_epoch,
)

__all__ = ["KeypointModel", "train_keypoint_models", "predict_keypoints", "RECORD_FORMAT"]

#: ``format`` entry of a saved record; bump when the record layout changes.
RECORD_FORMAT = "faceops.sspcm/1"

_PREDICTORS = {"student": slice(2, 3), "teachers": slice(0, 2), "all": slice(0, 3)}


@dataclass
class KeypointModel:
    """Trained heatmap networks and the config that built them.

    Attributes:
        nets: SSPCM: [NET1, NET2, NET3] (teachers, student); supervised: [net].
        config: the training config (also fixes the input size and which networks predict).
        num_joints: J.
        history: per-epoch training figures (see :class:`faceops.keypoints.sspcm.FitResult`).
    """

    nets: list[nn.Module]
    config: SSPCMConfig
    num_joints: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def predictors(self) -> list[nn.Module]:
        """The networks whose averaged heatmaps are the prediction (``config.predict_with``)."""
        return self.nets if len(self.nets) == 1 else self.nets[_PREDICTORS[self.config.predict_with]]

    def to_record(self) -> dict[str, Any]:
        """Tensors and plain values only (save with ``torch.save``, load with ``weights_only=True``)."""
        return {
            "format": RECORD_FORMAT,
            "config": _config_to_json(self.config),
            "num_joints": self.num_joints,
            "state_dicts": [net.state_dict() for net in self.nets],
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, device: str | torch.device = "cpu") -> KeypointModel:
        """Rebuild a model saved by :meth:`to_record` (networks in eval mode)."""
        if record.get("format") != RECORD_FORMAT:
            raise ValueError(f"record format {record.get('format')!r} is not {RECORD_FORMAT!r}; "
                             "only load keypoint models that this faceops version wrote")  # fmt: skip
        config = _config_from_json(record["config"])
        nets = build_nets(config.model, len(record["state_dicts"]), seed=0, num_joints=int(record["num_joints"]))
        for net, state in zip(nets, record["state_dicts"], strict=True):
            net.load_state_dict(state)
            net.to(device).eval()
        return cls(nets=nets, config=config, num_joints=int(record["num_joints"]))


def _config_to_json(config: SSPCMConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def _config_from_json(values: Mapping[str, Any]) -> SSPCMConfig:
    known = {f.name: f for f in dataclasses.fields(SSPCMConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown keypoint config keys {unknown}; allowed: {sorted(known)}")
    return SSPCMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _to_input(images: np.ndarray, size: tuple[int, int], what: str) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1], after checking dtype and size."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"{what} must be uint8 [N, H, W, 3] RGB; got {arr.dtype} {arr.shape}")
    if tuple(arr.shape[1:3]) != tuple(size):
        raise ValueError(f"{what} are {arr.shape[1]}x{arr.shape[2]} but the model takes {size[0]}x{size[1]} "
                         "(config.input_size); crop them to that size first (faceops.align.crop)")  # fmt: skip
    return (torch.from_numpy(arr).permute(0, 3, 1, 2).to(torch.float32) / 255.0 - 0.5) / 0.5


def train_keypoint_models(
    labeled_images: np.ndarray,
    labeled_points: np.ndarray,
    unlabeled_images: np.ndarray,
    *,
    config: SSPCMConfig,
    seed: int,
    labeled_visible: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    on_epoch: EpochHook | None = None,
) -> KeypointModel:
    """Train SSPCM (or, with ``config.method="supervised"``, the one-network baseline).

    Args:
        labeled_images: uint8 [L, H, W, 3] RGB at ``config.input_size``.
        labeled_points: [L, J, 2] (x, y) pixels of those images.
        unlabeled_images: uint8 [U, H, W, 3]; one epoch is one pass over them (the supervised
            baseline uses only their count, to run the same number of steps).
        config: training settings.
        seed: seeds initialisation, batch order, augmentation and Cut-Occlude.
        labeled_visible: optional [L, J] 0/1; 0 masks a missing joint (default: all visible).
        device: where to train.
        on_epoch: called with each epoch's history row (progress logging).

    Returns:
        The trained :class:`KeypointModel` (networks in eval mode).
    """
    images = _to_input(labeled_images, config.input_size, "labeled_images")
    unlabelled = _to_input(unlabeled_images, config.input_size, "unlabeled_images")
    points = torch.as_tensor(np.asarray(labeled_points, dtype=np.float32))
    if points.ndim != 3 or points.shape[0] != len(images) or points.shape[-1] != 2:
        raise ValueError(f"labeled_points must be [L={len(images)}, J, 2] (x, y); got {tuple(points.shape)}")
    num_joints = points.shape[1]
    visible = torch.ones(points.shape[:2])
    if labeled_visible is not None:
        visible = torch.as_tensor(np.asarray(labeled_visible, dtype=np.float32))
    count = 3 if config.method == "sspcm" else 1
    nets = [net.to(device) for net in build_nets(config.model, count, seed=seed, num_joints=num_joints)]
    if config.method == "sspcm":
        fit = fit_sspcm(nets, images, points, visible, unlabelled, cfg=config, seed=seed, on_epoch=on_epoch)
    else:
        steps = steps_per_epoch(len(unlabelled), config.batch_size)
        fit = fit_supervised(
            nets[0], images, points, visible, steps_per_epoch=steps, cfg=config, seed=seed, on_epoch=on_epoch
        )
    for net in nets:
        net.eval()
    return KeypointModel(nets=nets, config=config, num_joints=num_joints, history=fit.history)


def predict_keypoints(
    model: KeypointModel, images: np.ndarray, *, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of uint8 [N, H, W, 3] images at ``model.config.input_size``.

    Returns:
        points [N, J, 2] float32 (x, y) pixels of the given images, and confidence [N, J] float32:
        the peak of the predicting networks' averaged heatmap (about 1 for a sure, well-placed
        joint, near 0 when the networks see nothing).
    """
    x = _to_input(images, model.config.input_size, "images")
    points, scores = predict_points(model.predictors, x, batch_size=batch_size)
    return points.numpy().astype(np.float32), scores.numpy().astype(np.float32)
