"""Everything the ``evaluate`` stage measures of a trained model: each source's shard split, and the ``.bin`` sets.

Per source: :func:`faceops.eval.evaluate.predict` over the split's shards in file order, then
:func:`faceops.eval.evaluate.score_predictions` (verification, expression, age, attributes, gender, groups)
with its plot data (ROC, expression confusion). Per ``.bin`` set: :func:`faceops.eval.bins.bin_verification`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from faceops.data.loader import make_loader
from faceops.eval.bins import bin_verification
from faceops.eval.evaluate import predict, score_predictions
from faceops.eval.lowres import lowres_protocol, read_faces
from faceops.train.batch import normalize_images

__all__ = ["evaluate_model"]


def evaluate_model(
    model: torch.nn.Module, source_urls: Mapping[str, Sequence[Path]], *, bins: Mapping[str, Path], image_size: int,
    n_pairs: int, folds: int, seed: int, batch_size: int, num_workers: int = 0, device: str = "cpu",
    autocast_dtype: torch.dtype | None = None, lowres: Sequence[int] = (), sr_model: torch.nn.Module | None = None,
) -> tuple[dict[str, float | int], dict[str, list[dict[str, Any]]]]:  # fmt: skip
    """Metrics and plots of ``model`` on every source's shards and every ``.bin`` set.

    Args:
        model: the trained model, on ``device``.
        source_urls: source name -> the shard files to score (one split).
        bins: set name -> its ``.bin`` file.
        image_size: the model's input side (``.bin`` faces are brought to it).
        n_pairs, folds, seed: verification pairs drawn per source, k-fold count, their seed.
        batch_size, num_workers, device, autocast_dtype: how the model runs (``predict``).
        lowres, sr_model: resolutions of the low-resolution protocol per source (``faceops.eval.lowres``; none:
            skipped) and the super-resolution model its probes go through too (None: without SR only).

    Returns:
        ``(metrics, plots)``: ``<source>/<key>`` and ``bin/<set>/<key>`` metrics; ``<source>_<plot>`` -> rows
        (``<source>_lowres``: one row per resolution).
    """
    metrics: dict[str, float | int] = {}
    plots: dict[str, list[dict[str, Any]]] = {}
    for source, urls in source_urls.items():
        loader = make_loader(list(urls), batch_size=batch_size, num_workers=num_workers, shuffle_buffer=0, seed=0,
                             epoch=0)  # fmt: skip
        pred = predict(model, loader, normalize=normalize_images, device=device, autocast_dtype=autocast_dtype)
        scores, found = score_predictions(pred, n_pairs=n_pairs, seed=seed, folds=folds)
        metrics.update({f"{source}/{key}": value for key, value in scores.items()})
        plots.update({f"{source}_{name}": rows for name, rows in found.items()})
        if lowres:
            images, metas, keys = read_faces(list(urls), batch_size)
            scores, plots[f"{source}_lowres"] = lowres_protocol(
                model, images, metas, keys, resolutions=lowres, n_pairs=n_pairs, folds=folds, seed=seed,
                batch_size=batch_size, device=device, autocast_dtype=autocast_dtype, sr_model=sr_model)  # fmt: skip
            metrics.update({f"{source}/{key}": value for key, value in scores.items()})
    for name, path in bins.items():
        scores = bin_verification(model, path, image_size=image_size, batch_size=batch_size, folds=folds,
                                  device=device, autocast_dtype=autocast_dtype)  # fmt: skip
        metrics.update({f"bin/{name}/{key}": value for key, value in scores.items()})
    return metrics, plots
