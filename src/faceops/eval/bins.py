"""Verification on insightface ``.bin`` sets (``lfw``, ``cfp_fp``, ``agedb_30``, ...) with a trained model.

A set holds pairs of aligned faces as consecutive encoded images (pair ``i`` = images ``2i`` and
``2i + 1``; :func:`faceops.io.verification_bin.load_verification_bin` reads it safely). The faces go
through the same decode as the shards' (``faceops.data.loader.decode_jpeg``), and a face of another
side than the model's input is brought to it the library's one way: warped from the ArcFace template at
its size onto the template at ``image_size`` (``faceops.align.align_face``; insightface's faces are
aligned to that template). Scores: k-fold accuracy and the other verification metrics of
:func:`faceops.eval.verification.verification_metrics` on cosine similarity.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from faceops.align import align_face, template_for_size
from faceops.data.loader import decode_jpeg
from faceops.eval.evaluate import predict
from faceops.eval.verification import cosine_scores, verification_metrics
from faceops.io.verification_bin import load_verification_bin
from faceops.train.batch import normalize_images

__all__ = ["bin_batches", "bin_verification"]


def _face(data: bytes, index: int, image_size: int) -> np.ndarray:
    """Image ``index`` decoded, [image_size, image_size, 3] uint8 RGB."""
    face = decode_jpeg(data, "numpy")
    height, width = face.shape[:2]
    if height != width:
        raise ValueError(f"image {index} is {width}x{height}; a verification face must be square (aligned to the "
                         "ArcFace template), so re-export the set with square crops")  # fmt: skip
    return face if width == image_size else align_face(face, template_for_size(width), image_size)


def bin_batches(images: Sequence[bytes], *, image_size: int, batch_size: int) -> Iterator[dict]:
    """Batches for ``faceops.eval.evaluate.predict``: ``{"image": uint8 [B, 3, S, S], "meta", "key"}``, keys
    the images' positions.

    Raises:
        ValueError: an image that does not decode or is not square.
    """
    for start in range(0, len(images), batch_size):
        chunk = range(start, min(start + batch_size, len(images)))
        faces = np.stack([_face(images[i], i, image_size) for i in chunk])  # [B, S, S, 3]
        yield {"image": torch.from_numpy(faces).permute(0, 3, 1, 2), "meta": [{}] * len(chunk),
               "key": [str(i) for i in chunk]}  # fmt: skip


def bin_verification(
    model: torch.nn.Module, path: Path, *, image_size: int, batch_size: int, folds: int, device: str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:  # fmt: skip
    """Verification metrics of ``model`` on the ``.bin`` set at ``path`` (``verif/*`` keys' names, no prefix).

    Args:
        model: the trained model, on ``device``.
        path: the ``.bin`` file.
        image_size: the model's input side (``base.image_size``).
        batch_size: faces per forward pass.
        folds: k of the k-fold accuracy.
        device, autocast_dtype: as for ``predict``.
    """
    images, same = load_verification_bin(path)
    batches = bin_batches(images, image_size=image_size, batch_size=batch_size)
    emb = predict(model, batches, normalize=normalize_images, device=device, autocast_dtype=autocast_dtype).embeddings
    idx = np.arange(len(same))
    return verification_metrics(cosine_scores(emb, 2 * idx, 2 * idx + 1), np.asarray(same, bool), folds=folds)
