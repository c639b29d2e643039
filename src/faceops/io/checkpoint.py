"""Checkpoint files: atomic saving and safe loading of self-describing training records.

Two kinds of file, kept separate (style guide C15):

- ``"resume"``: everything a killed run needs to continue bit-for-bit (model, margin centres,
  optimizer, scheduler, grad scaler, RNG states, data-stream position, logged history), plus the
  description below. Lives outside DVC outputs, e.g. ``.faceops/ckpt/<stage>/<fingerprint>/last.pt``.
- ``"model"``: the exported network for evaluation and inference (``MODEL_FILE`` in the stage output).

Both describe themselves: ``format``, ``kind``, ``model_name`` + ``model_args`` (so
``faceops.models.create_model(ckpt["model_name"], **ckpt["model_args"])`` rebuilds the network),
``step``, ``params`` (the resolved params section) and ``identities`` (class ``i`` of the margin head).

Why ``weights_only=True``: a checkpoint is a pickle, and a pickle can run code when loaded. Loading
only tensors and plain containers means a tampered file is refused instead of executed; records
therefore hold only tensors, numbers, strings, lists, tuples and dicts.

Why write to bytes first: ``atomic_write_bytes`` gives the temporary-file + fsync + ``os.replace``
sequence, so a crash leaves the previous checkpoint intact; the price is one in-memory copy.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from faceops.io.atomic import atomic_write_bytes
from faceops.io.layout import MODEL_FILE, RESUME_FILE

__all__ = ["CHECKPOINT_FORMAT", "MODEL_FILE", "RESUME_FILE", "CheckpointError", "save_checkpoint", "load_checkpoint"]

#: Version of the record layout.
CHECKPOINT_FORMAT = 1

Kind = Literal["resume", "model"]


class CheckpointError(ValueError):
    """A checkpoint that is unsafe, corrupt, or not the kind the caller expects; names the file."""


def save_checkpoint(path: str | Path, record: Mapping[str, Any], *, kind: Kind) -> None:
    """Write ``record`` (plus ``format`` and ``kind``) to ``path`` atomically.

    Args:
        path: destination file (parent directories are created).
        record: tensors and plain containers only (it must load with ``weights_only=True``).
        kind: ``"resume"`` or ``"model"``.
    """
    buffer = io.BytesIO()
    torch.save({**record, "format": CHECKPOINT_FORMAT, "kind": kind}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, *, kind: Kind, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check its format and kind.

    Args:
        path: the file.
        kind: the expected kind (``"resume"`` or ``"model"``).
        map_location: where tensors are loaded.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file holds arbitrary Python objects (refused, never executed), is not a
            checkpoint, or has another format or kind.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain containers "
            f"(torch.load weights_only=True said: {str(err).splitlines()[0]}); only load checkpoints faceops wrote"
        ) from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({err}); delete it and re-run the stage") from None
    if not isinstance(record, dict) or record.get("format") != CHECKPOINT_FORMAT or record.get("kind") != kind:
        got = (record.get("format"), record.get("kind")) if isinstance(record, dict) else type(record).__name__
        raise CheckpointError(
            f"{path} is not a format-{CHECKPOINT_FORMAT} {kind!r} checkpoint (got {got!r}); "
            "it was written by another tool or version"
        )
    return record
