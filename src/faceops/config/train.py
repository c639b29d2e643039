"""Multi-task SwinFace training (section ``train``, stage ``train``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from faceops.config.fit import FitParams
from faceops.config.gabn import GabnParams

__all__ = ["TrainParams"]


class TrainParams(FitParams):
    """Multi-task SwinFace training (stage ``train``); the backbone learns at ``lr * backbone_lr_scale``.

    ``init``: ``pretrain`` starts the backbone from the ``pretrain`` stage's model (from scratch when
    pre-training is disabled); a promotion tag ``model@vN`` fine-tunes the whole model promoted as that
    version (backbone and analysis heads; the identity classifier starts afresh, since the identities may
    differ). A tag rather than "the latest promoted" so that params, and so dvc.lock, say which model a
    run started from; ``ops.retrain.from_promoted`` moves it to the newest tag before a scheduled retrain.
    ``imported:<model>@<sha256 prefix>`` starts from official weights that ``faceops import-weights`` wrote
    to ``models/imported/<model>.pt`` (the whole model, or the backbone of a recognition-only one); the
    12 hex digits pin those bytes, so params and dvc.lock name the start here too.
    ``gabn``: GABN's attention-balancing terms (``faceops.config.gabn``), off by default.
    """

    model: Literal["swinface_cpu", "swinface_swin_t"] = "swinface_cpu"
    init: Annotated[str, Field(pattern=r"^(pretrain|model@v[1-9][0-9]*|imported:[a-z0-9_]+@[0-9a-f]{12})$")] = (
        "pretrain"
    )
    steps: Annotated[int, Field(ge=1, le=10_000_000)] = 160
    warmup_steps: Annotated[int, Field(ge=0)] = 16
    backbone_lr_scale: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    gabn: GabnParams = Field(default_factory=GabnParams)
