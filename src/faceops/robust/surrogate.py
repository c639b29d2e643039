"""A small CNN classifier trained on in-memory faces: the frozen model of the CPU-tiny benches and tests.

SGA's CPU-sized configuration attacks "a tiny CNN (2 conv + linear)" trained on a synthetic 10-class set;
Gbench-mini needs a classifier too. This one (three conv blocks, ours) registers as ``cnn_tiny`` in the
model registry and trains through the project's one loop (:func:`faceops.train.loop.fit`) with a plain
cross-entropy on its logits; its input is normalised like every faceops model
(:func:`faceops.train.batch.normalize_images`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from faceops.models import create_model, register_model
from faceops.train.loop import fit
from faceops.train.mixing import Batch
from faceops.train.schedule import make_scheduler

__all__ = ["SmallCNN", "cnn_tiny", "train_classifier", "FEATURES", "LOGITS"]

#: Output keys: the penultimate embedding [B, D] and the class logits [B, C].
FEATURES, LOGITS = "features", "logits"


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (two max-pools), global average pool, a feature layer and a linear classifier.

    ``forward`` returns ``{"features": [B, num_features], "logits": [B, num_classes]}``.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 32, num_features: int = 64):
        """
        Args:
            num_classes: classifier outputs.
            in_chans: input channels.
            width: channels of the first block (doubled by each later block).
            num_features: width of the embedding before the classifier.
        """
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        self.trunk = nn.Sequential(*block(in_chans, width), nn.MaxPool2d(2), *block(width, 2 * width), nn.MaxPool2d(2),
                                   *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                   nn.Linear(4 * width, num_features), nn.ReLU(inplace=True))  # fmt: skip
        self.head = nn.Linear(num_features, num_classes)
        self.num_features = num_features

    def backbone_parameters(self):
        """Everything before the classifier (what ``fit`` clips when asked to)."""
        return self.trunk.parameters()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images [B, 3, H, W] normalised to [-1, 1] -> features and logits."""
        features = self.trunk(x)
        return {FEATURES: features, LOGITS: self.head(features)}


@register_model
def cnn_tiny(pretrained: bool = False, **kwargs: Any) -> SmallCNN:
    """The small CNN (width 32, 64 features); no released weights."""
    if pretrained:
        raise ValueError("cnn_tiny has no pretrained weights; train it with faceops.robust.surrogate.train_classifier")
    return SmallCNN(**kwargs)


class _ArrayBatches:
    """An endless stream of shuffled batches over in-memory faces (the ``BatchStream`` that ``fit`` reads)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int):
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed
        self.epoch, self.position = 0, 0

    def _order(self) -> torch.Tensor:
        return torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(self.seed + self.epoch))

    def __next__(self) -> Batch:
        if self.position + self.batch_size > len(self.labels):
            self.epoch, self.position = self.epoch + 1, 0
        index = self._order()[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        ones = torch.ones(len(index), dtype=torch.bool)
        return Batch(self.images[index], {LOGITS: self.labels[index]}, {LOGITS: ones}, [str(int(i)) for i in index],
                     ["memory"] * len(index))  # fmt: skip

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


class _LogitsCrossEntropy(nn.Module):
    """``fit``'s loss contract ``(outputs, targets, masks, *, progress) -> (total, parts)`` for one classifier."""

    def forward(self, outputs, targets, masks, *, progress: float):
        loss = F.cross_entropy(outputs[LOGITS], targets[LOGITS])
        return loss, {"ce": loss}


def train_classifier(
    images: np.ndarray, labels: np.ndarray, *, steps: int, seed: int, batch_size: int = 64, lr: float = 3e-3,
    device: str = "cpu", model_args: Mapping[str, Any] | None = None,
) -> SmallCNN:  # fmt: skip
    """Train ``cnn_tiny`` on uint8 faces [N, H, W, 3] with class labels [N] (0..C-1); returned in eval mode.

    Raises:
        ValueError: shapes disagree, fewer images than one batch, or a label outside 0..C-1.
    """
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[0] != labels.shape[0] or images.dtype != np.uint8:
        raise ValueError(f"need uint8 images [N, H, W, 3] and labels [N], got {images.shape} {images.dtype} and "
                         f"{labels.shape}")  # fmt: skip
    if labels.min() < 0 or len(labels) < batch_size:
        raise ValueError(f"need labels >= 0 and at least batch_size={batch_size} images, got {len(labels)}")
    torch.manual_seed(seed)
    model = create_model("cnn_tiny", num_classes=int(labels.max()) + 1, **dict(model_args or {})).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = make_scheduler(optimizer, warmup_steps=max(1, steps // 20), total_steps=steps)
    stream = _ArrayBatches(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
                           torch.from_numpy(labels.astype(np.int64)), batch_size, seed)  # fmt: skip
    fit(model, _LogitsCrossEntropy(), optimizer, scheduler, stream, steps=steps, seed=seed, device=device)
    return model.eval()
