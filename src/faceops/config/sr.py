"""Super-resolution of faces with FIWHN (section ``sr``, stage ``sr``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.core import Section

__all__ = ["SrParams"]


class SrParams(Section):
    """FIWHN (arXiv:2212.14181) trained on random LR/HR patch pairs (stage ``sr``, ``faceops.sr``).

    ``data: shards`` reads the aligned faces of ``source`` (its ``train_split`` to train, ``eval_split``
    held out); ``data: raw`` reads every image under data/raw/<source> (any image folder registered with
    ``faceops ingest``), ``heldout_fraction`` of them (by file-name hash) held out. Low-resolution inputs are
    made with the one antialiased bicubic degradation (``faceops.sr.degrade``). Training as the official
    code: L1 on [0, 255] pixels, Adam (0.9, 0.999, eps 1e-8, no decay) at ``lr``, cosine to ``eta_min`` over
    ``steps``, random flips and 90-degree turns; ``patch`` is the LR side of a patch (the paper's 48 on
    DIV2K does not fit 112 px faces at x4: 24 does). ``init: imported:<model>@<sha256
    prefix>`` starts from models/imported/<model>.pt (``faceops import-weights fiwhn``; the 12 hex digits pin
    its bytes, so params and dvc.lock name the start); ``steps: 0`` only evaluates it. ``skip_init: bicubic``
    (ours) starts a scratch network as bicubic-like upsampling (``faceops.models.fiwhn``), which a short
    training needs to get past bicubic at all; ``default`` is PyTorch's initialisation, as the official code.
    Scored on the held-out images: PSNR and SSIM on the Y channel, ``scale`` border pixels shaved, against
    bicubic upsampling; ``grid_images`` held-out faces go to an LR / bicubic / SR / HR image grid.
    Full size (the schema default) is the paper's C = 32; the demo ships a tiny width.
    """

    model: Literal["fiwhn_x2", "fiwhn_x3", "fiwhn_x4"] = "fiwhn_x4"
    channels: Annotated[int, Field(ge=8, le=256, multiple_of=8)] = 32
    skip_init: Literal["default", "bicubic"] = "default"
    init: Annotated[str, Field(pattern=r"^(scratch|imported:fiwhn_x[234]@[0-9a-f]{12})$")] = "scratch"
    data: Literal["shards", "raw"] = "shards"
    source: Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)] = "sample"
    train_split: Literal["train", "val", "test"] = "train"
    eval_split: Literal["train", "val", "test"] = "test"
    heldout_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    steps: Annotated[int, Field(ge=0, le=10_000_000)] = 1_000_000
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 16
    patch: Annotated[int, Field(ge=4, le=512)] = 24
    lr: Annotated[float, Field(gt=0.0, le=1.0)] = 5e-4
    eta_min: Annotated[float, Field(ge=0.0, le=1.0)] = 1e-7
    augment: bool = True
    eval_batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    grid_images: Annotated[int, Field(ge=1, le=64)] = 6
    checkpoint_every: Annotated[int, Field(ge=1)] = 1000
    log_every: Annotated[int, Field(ge=1)] = 10

    @model_validator(mode="after")
    def _consistent(self) -> SrParams:
        if self.data == "shards" and self.train_split == self.eval_split:
            raise ValueError(f"sr.train_split and sr.eval_split are both {self.train_split!r}: held-out faces "
                             "must not be trained on")  # fmt: skip
        if self.init != "scratch" and not self.init.startswith(f"imported:{self.model}@"):
            raise ValueError(f"sr.init {self.init!r} imports another model than sr.model {self.model!r}")
        if self.eta_min > self.lr:
            raise ValueError(f"sr.eta_min ({self.eta_min}) must be <= sr.lr ({self.lr})")
        return self
