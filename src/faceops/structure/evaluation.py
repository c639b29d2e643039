"""Evaluate a structure model on shards: HEAT's metrics over a split and the predictions drawn over the images.

The ``structure-evaluate`` stage's work (:func:`evaluate_model_file`): :func:`load_structure_model` reads the
exported record safely, :func:`evaluate_structure` decodes every image of the shards
(``faceops.structure.inference``), scores it against its labels (``faceops.structure.metrics``: HEAT's
corner, edge and region matching; Chen, Qian and Furukawa, CVPR 2022, arXiv 2111.15143, as CornerFormer,
arXiv 2304.07072, reports it) and draws the first images: ground truth in green, the prediction in red.

Papers: CornerFormer: Hongbo Tian, Yulong Li, Linzhi Huang, Xu Ling, Yue Yang and Jiani Hu, "CornerFormer: Boosting
Corner Representation for Fine-Grained Structured Reconstruction", arXiv preprint 2304.07072, 2023; HEAT: Jiacheng
Chen, Yiming Qian and Yasutaka Furukawa, "HEAT: Holistic Edge Attention Transformer for Structured Reconstruction",
CVPR 2022, arXiv 2111.15143.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from faceops.data.loader import ShardDataset
from faceops.io.checkpoint import load_checkpoint
from faceops.structure.graph import PlanarGraph, graph_from_labels
from faceops.structure.inference import Decoding, predict_graphs
from faceops.structure.metrics import score_graph, summarize_counts
from faceops.structure.model import CornerEdgeNet
from faceops.train.export import build_model

if TYPE_CHECKING:
    from faceops.config.structure_evaluate import StructureEvaluateParams

__all__ = ["draw_graphs", "evaluate_model_file", "evaluate_structure", "load_structure_model"]

_TRUTH, _PREDICTED = (40, 220, 60), (240, 40, 40)


def load_structure_model(path: Path, device: str = "cpu") -> tuple[CornerEdgeNet, dict[str, Any]]:
    """The exported structure model (``torch.load(weights_only=True)``), in eval mode on ``device``, and its record.

    Raises:
        TypeError: the file holds another kind of model (e.g. a face model).
    """
    record = load_checkpoint(path, kind="model", map_location=device)
    model = build_model(record)
    if not isinstance(model, CornerEdgeNet):
        raise TypeError(f"{path} holds a {record.get('model_name')!r} model, not a structure model (cornerformer_*)")
    return model.to(device), record


def _batches(urls: Sequence[Path], batch_size: int) -> Iterator[tuple[torch.Tensor, list[dict[str, Any]]]]:
    images, metas = [], []
    for sample in ShardDataset(urls):
        images.append(sample["image"])
        metas.append(sample["meta"])
        if len(images) == batch_size:
            yield torch.stack(images), metas
            images, metas = [], []
    if images:
        yield torch.stack(images), metas


def draw_graphs(image: np.ndarray, truth: PlanarGraph, predicted: PlanarGraph) -> np.ndarray:
    """``image`` [H, W, 3] RGB enlarged to >= 256 px with ``truth`` (green) and ``predicted`` (red) drawn over it."""
    scale = max(1, 256 // image.shape[0])
    canvas = np.ascontiguousarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST))
    for graph, color, radius in ((truth, _TRUTH, 3), (predicted, _PREDICTED, 2)):
        points = [tuple(int(v) for v in np.round((p + 0.5) * scale - 0.5)) for p in graph.corners]
        for i, j in graph.edges:
            cv2.line(canvas, points[i], points[j], color, 1, cv2.LINE_AA)
        for point in points:
            cv2.circle(canvas, point, radius, color, -1, cv2.LINE_AA)
    return canvas


def evaluate_structure(
    model: CornerEdgeNet, urls: Sequence[Path], *, decoding: Decoding, match_px: float = 8.0, iou: float = 0.7,
    min_area: int = 20, batch_size: int = 16, device: str = "cpu", plot_images: int = 16, columns: int = 4,
) -> tuple[dict[str, float | int], np.ndarray | None]:  # fmt: skip
    """HEAT's metrics of ``model`` on the shards ``urls`` and a grid of the first ``plot_images`` drawn.

    Returns:
        Metrics ``images`` and ``<corner|edge|region>/<precision|recall|f1|tp|predicted|truth>``, and the
        drawing (uint8 RGB, ``columns`` images a row; None when ``plot_images`` is 0).

    Raises:
        ValueError: the shards hold no image.
    """
    counts, drawn = [], []
    for images, metas in _batches(urls, batch_size):
        predicted = predict_graphs(model, images, decoding, device)
        for image, meta, graph in zip(images, metas, predicted):
            truth = graph_from_labels(meta)
            counts.append(score_graph(graph, truth, tuple(image.shape[-2:]), match_px=match_px, iou=iou,
                                      min_area=min_area))  # fmt: skip
            if len(drawn) < plot_images:
                drawn.append(draw_graphs(image.permute(1, 2, 0).numpy(), truth, graph))
    if not counts:
        raise ValueError(f"no image in the {len(urls)} shards given; is the split empty?")
    grid = None
    if drawn:
        blank = np.zeros_like(drawn[0])
        rows = [drawn[k : k + columns] + [blank] * (columns - len(drawn[k : k + columns]))
                for k in range(0, len(drawn), columns)]  # fmt: skip
        grid = np.vstack([np.hstack(row) for row in rows])
    return {"images": len(counts), **summarize_counts(counts)}, grid


def evaluate_model_file(
    path: Path, urls: Mapping[str, Sequence[Path]], cfg: StructureEvaluateParams, device: str = "cpu"
) -> tuple[dict[str, float | int], dict[str, np.ndarray]]:
    """Evaluate the exported model at ``path`` on each source's shards ``urls`` (source -> shard files).

    Corners are detected as the model was trained to see them (the record's ``detection`` and
    ``edge_multiplier``); the rest of the decoding and the matching come from ``cfg``.

    Returns:
        Metrics ``step`` and ``<source>/<metric>`` (:func:`evaluate_structure`), and each source's drawing.
    """
    model, record = load_structure_model(path, device)
    trained = record["params"]
    decoding = Decoding(
        threshold=trained["detection"]["threshold"], nms_radius=trained["detection"]["nms_radius"],
        merge_px=trained["detection"]["merge_px"], edge_multiplier=trained["edge_multiplier"],
        max_corners=cfg.max_corners, rounds=cfg.rounds, fix_positive=cfg.fix_positive, fix_negative=cfg.fix_negative,
        keep=cfg.keep,
    )  # fmt: skip
    metrics: dict[str, float | int] = {"step": int(record["step"])}
    drawings: dict[str, np.ndarray] = {}
    for source, source_urls in urls.items():
        values, grid = evaluate_structure(model, source_urls, decoding=decoding, match_px=cfg.match_px, iou=cfg.iou,
                                          min_area=cfg.min_region_area, batch_size=cfg.batch_size, device=device,
                                          plot_images=cfg.plot_images)  # fmt: skip
        metrics.update({f"{source}/{key}": value for key, value in values.items()})
        if grid is not None:
            drawings[source] = grid
    return metrics, drawings
