"""The exported super-resolution model: the record the ``sr`` stage and ``faceops import-weights fiwhn`` write.

Same layout as a recognition model's record (``faceops.train.export``; ``build_model`` rebuilds it with
``create_model(model_name, **model_args)``), plus ``task: "super_resolution"``, the upscaling ``scale`` and
the pixel range the network reads and writes (``rgb_range``: RGB in [0, 255] for FIWHN), so a reader can
refuse a file that is not a super-resolution model before feeding it faces.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from faceops.io.checkpoint import load_checkpoint
from faceops.train.export import build_model

__all__ = ["SR_TASK", "load_sr_model", "sr_record"]

SR_TASK = "super_resolution"


def sr_record(
    model: nn.Module, model_name: str, model_args: Mapping[str, Any], *, step: int, params: Mapping[str, Any], init: str
) -> dict[str, Any]:
    """The record of a super-resolution network (save it with ``save_checkpoint(..., kind="model")``).

    Args:
        model: the network (``scale`` and ``rgb_range`` attributes, as :class:`faceops.models.fiwhn.FIWHN`).
        model_name, model_args: how ``create_model`` builds it.
        step: optimizer steps trained (0 for imported weights used as they are).
        params: the resolved params section of the run (plain JSON types).
        init: where the weights started: ``"scratch"``, ``"imported"`` or ``"official:<file name>"``.
    """
    return {"enabled": True, "task": SR_TASK, "model_name": model_name, "model_args": dict(model_args),
            "state_dict": model.state_dict(), "scale": int(model.scale), "rgb_range": float(model.rgb_range),
            "step": int(step), "params": dict(params), "init": init}  # fmt: skip


def load_sr_model(path: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Read a super-resolution record safely (``weights_only``) and rebuild its network in eval mode.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is a model record of another task (e.g. a recognition model).
    """
    record = load_checkpoint(path, kind="model", map_location=map_location)
    if record.get("task") != SR_TASK:
        raise ValueError(f"{path} holds a {record.get('model_name')!r} model, not a super-resolution one "
                         "(written by the sr stage or `faceops import-weights fiwhn`)")  # fmt: skip
    return build_model(record), record
