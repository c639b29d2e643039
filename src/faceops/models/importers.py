"""Importers of official checkpoints: what ``faceops import-weights <name> <checkpoint>`` runs.

One registry (``IMPORTERS``): a name -> a function that reads a foreign checkpoint safely
(``torch.load(weights_only=True)``: a tampered pickle is refused, never executed), maps its tensor names onto
a registered faceops model strictly (every tensor must fit; the error names the first key or shape that does
not) and returns an exported-model record that ``faceops.train.build_model`` / ``load_trained_model`` rebuild.
The CLI saves the record (``save_checkpoint(..., kind="model")``) and tracks it with DVC.

- ``swinface``: the official SwinFace weights (github.com/lxq1000/SwinFace, ``checkpoint_step_79999_gpu_0.pt``:
  the whole model as ``swinface_swin_t``, or a backbone-only checkpoint as ``swinface_swin_t_rec``;
  arXiv:2308.11509); the name map is ``faceops.models.swinface_official``.
- ``fiwhn``: the official FIWHN weights (github.com/24wenjie-li/FIWHN, ``experiments/model_best_x{2,3,4}.pt``,
  455 tensors each; arXiv:2212.14181); the scale and width are read from the tensor shapes.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from faceops.models._registry import create_model

__all__ = ["IMPORTERS", "register_importer", "import_weights", "read_checkpoint", "read_state_dict"]

Importer = Callable[[Path], dict[str, Any]]
IMPORTERS: dict[str, Importer] = {}


def register_importer(name: str) -> Callable[[Importer], Importer]:
    """Register ``fn(checkpoint) -> record`` under ``name`` (decorator); a name registered twice is an error."""

    def decorate(fn: Importer) -> Importer:
        if name in IMPORTERS:
            raise ValueError(f"an importer named {name!r} is registered already ({IMPORTERS[name].__module__})")
        IMPORTERS[name] = fn
        return fn

    return decorate


def import_weights(name: str, checkpoint: str | Path) -> dict[str, Any]:
    """The exported-model record of the official checkpoint ``checkpoint`` read by importer ``name``.

    Raises:
        ValueError: unknown importer name (the message lists the known ones), or the checkpoint does not fit.
        FileNotFoundError: no such file.
    """
    if name not in IMPORTERS:
        raise ValueError(f"no importer named {name!r}; expected one of {sorted(IMPORTERS)}")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return IMPORTERS[name](path)


def read_checkpoint(path: Path) -> Any:
    """A foreign checkpoint's contents, read with ``torch.load(weights_only=True)`` onto the CPU.

    Raises:
        ValueError: the file holds other objects than tensors and plain containers, or is no checkpoint.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"refused to load {path}: it holds objects other than tensors (torch.load "
                         f"weights_only=True said: {str(err).splitlines()[0]})") from None  # fmt: skip
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"{path} is not a readable torch checkpoint ({err})") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a foreign checkpoint: a plain state dict, or one under ``state_dict`` / ``model``;
    a DataParallel ``module.`` prefix is removed.

    Raises:
        ValueError: the file holds other objects than tensors and containers, is no checkpoint, or holds no
            mapping of names to tensors.
    """
    loaded = read_checkpoint(path)
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path} holds no state dict (a mapping of tensor names to tensors)")
    return {k.removeprefix("module."): v for k, v in loaded.items()}


@register_importer("fiwhn")
def import_fiwhn(path: Path) -> dict[str, Any]:
    """An official FIWHN checkpoint as a ``fiwhn_x<s>`` record (scale s from ``UP1.0.weight``: 3 s^2 outputs)."""
    from faceops.models.fiwhn import checkpoint_filter_fn
    from faceops.sr.record import sr_record

    state = read_state_dict(path)
    for key in ("UP1.0.weight", "head.weight"):
        if key not in state:
            raise ValueError(f"{path} has no {key!r}: not an official FIWHN checkpoint")
    scale, channels = math.isqrt(state["UP1.0.weight"].shape[0] // 3), int(state["head.weight"].shape[0])
    if scale not in (2, 3, 4) or 3 * scale * scale != state["UP1.0.weight"].shape[0]:
        raise ValueError(f"{path}: 'UP1.0.weight' has {state['UP1.0.weight'].shape[0]} outputs, not 3 s^2 for a "
                         "scale s of 2, 3 or 4")  # fmt: skip
    model_name, model_args = f"fiwhn_x{scale}", {"channels": channels}
    model = create_model(model_name, **model_args)
    model.load_state_dict(checkpoint_filter_fn(state, model))
    return sr_record(model, model_name, model_args, step=0, params={}, init=f"official:{path.name}")


@register_importer("swinface")
def import_swinface(path: Path) -> dict[str, Any]:
    """An official SwinFace checkpoint as a ``swinface_swin_t`` record (``swinface_swin_t_rec`` when it holds
    the backbone only); the official training steps, where saved, become the record's ``step``."""
    from faceops.models.swinface_official import checkpoint_filter_fn, split_checkpoint
    from faceops.train.export import model_record

    loaded = read_checkpoint(path)
    parts = split_checkpoint(loaded)
    model_name = "swinface_swin_t" if "fam" in parts else "swinface_swin_t_rec"
    model = create_model(model_name)
    model.load_state_dict(checkpoint_filter_fn(parts, model))
    steps = int(loaded["global_step"]) + 1 if isinstance(loaded.get("global_step"), int) else 0
    return model_record(model, model_name, {}, identities=[], step=steps, params={}, init=f"official:{path.name}")
