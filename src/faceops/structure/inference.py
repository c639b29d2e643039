"""From images to planar graphs: corner detection, edge filtering and HEAT's iterative edge decoding.

HEAT (Chen, Qian and Furukawa, CVPR 2022, arXiv 2111.15143; its ``infer.py``): corners are the heatmap peaks
above 0.01 after NMS (here per direction channel, ``faceops.structure.corners``), edge candidates are all
their pairs, stage 1 keeps ``edge_multiplier`` x corners of them, and stage 2 decodes in ``rounds``: in every
round but the last, undecided candidates with probability >= ``fix_positive`` become known edges and those
<= ``fix_negative`` known non-edges, fed back as known labels; the last round accepts the undecided ones with
probability >= ``keep``. Corners that end without an edge are dropped. CornerFormer (Tian et al., arXiv
2304.07072) decodes the same way as far as its abstract says.

Papers: CornerFormer: Hongbo Tian, Yulong Li, Linzhi Huang, Xu Ling, Yue Yang and Jiani Hu, "CornerFormer: Boosting
Corner Representation for Fine-Grained Structured Reconstruction", arXiv preprint 2304.07072, 2023; HEAT: Jiacheng
Chen, Yiming Qian and Yasutaka Furukawa, "HEAT: Holistic Edge Attention Transformer for Structured Reconstruction",
CVPR 2022, arXiv 2111.15143.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from faceops.structure.corners import detect_corners, sort_corners
from faceops.structure.graph import PlanarGraph, make_graph
from faceops.structure.losses import select_candidates
from faceops.structure.model import CornerEdgeNet
from faceops.train.batch import normalize_images

__all__ = ["Decoding", "predict_graphs", "without_isolated"]


@dataclass(frozen=True)
class Decoding:
    """Inference settings (HEAT's values as defaults; ``nms_radius`` and ``merge_px``: ours, see corners)."""

    threshold: float = 0.01
    nms_radius: float = 3.0
    merge_px: float = 2.0
    max_corners: int = 150
    edge_multiplier: int = 3
    rounds: int = 3
    fix_positive: float = 0.9
    fix_negative: float = 0.01
    keep: float = 0.5


def without_isolated(graph: PlanarGraph) -> PlanarGraph:
    """``graph`` without its corners of degree 0 (HEAT's post-processing), edges renumbered."""
    used = np.flatnonzero(graph.degrees() > 0)
    renumber = np.full(len(graph.corners), -1, np.int64)
    renumber[used] = np.arange(len(used))
    return make_graph(graph.corners[used], renumber[graph.edges])


@torch.no_grad()
def predict_graphs(
    model: CornerEdgeNet, images: torch.Tensor, decoding: Decoding = Decoding(), device: str | torch.device = "cpu"
) -> list[PlanarGraph]:
    """The planar graph of each image.

    Args:
        model: a trained :class:`CornerEdgeNet` (put in eval mode here).
        images: uint8 ``[B, 3, H, W]``.
        decoding: thresholds and rounds (module docstring).
        device: where the model is.
    """
    model.eval()
    outputs = model(normalize_images(images.to(device)))
    prob = torch.sigmoid(outputs["corners"].float()).cpu().numpy()
    found = []
    for plane in prob:
        xy = detect_corners(
            plane,
            threshold=decoding.threshold,
            nms_radius=decoding.nms_radius,
            merge_px=decoding.merge_px,
            max_peaks=decoding.max_corners,
        ).xy[: decoding.max_corners]
        found.append(xy[sort_corners(xy)])
    width = max([len(xy) for xy in found] + [2])
    corners = np.zeros((len(found), width, 2), np.float32)
    for b, xy in enumerate(found):
        corners[b, : len(xy)] = xy
    counts = torch.tensor([len(xy) for xy in found], device=device)
    scores = model.score_edges(outputs, torch.from_numpy(corners).to(device), counts)
    index, kept = select_candidates(scores.logits, scores.valid, counts, decoding.edge_multiplier)
    tokens = scores.tokens.gather(1, index[..., None].expand(-1, -1, scores.tokens.shape[-1]))
    states = torch.full_like(index, 2)
    for round_ in range(decoding.rounds):
        prob_edge = model.relate_edges(tokens, states, ~kept).float().softmax(-1)[..., 1]
        undecided = kept & (states == 2)
        if round_ == decoding.rounds - 1:
            states[undecided & (prob_edge >= decoding.keep)] = 1
            break
        states[undecided & (prob_edge >= decoding.fix_positive)] = 1
        states[undecided & (prob_edge <= decoding.fix_negative)] = 0
        if not bool((kept & (states == 2)).any()):
            break
    pairs = scores.pairs.cpu().numpy()
    chosen = (kept & (states == 1)).cpu().numpy()
    index = index.cpu().numpy()
    return [without_isolated(make_graph(xy, pairs[index[b][chosen[b]]])) for b, xy in enumerate(found)]
