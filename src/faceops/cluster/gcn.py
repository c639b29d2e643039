"""Linkage GCN (L-GCN): learn which kNN edges join the same identity, from a labelled source.

Paper: Wang et al., "Linkage Based Face Clustering via Graph Convolution Network", CVPR 2019 (arXiv
1903.11306); released code github.com/Zhongdao/gcn_clustering, re-implemented in
github.com/yl-1993/learn-to-cluster (``lgcn/``). Written from the paper's description and a reading of that
code; no code copied. faceops uses it as the linkage GCN of AIN (Wang and Deng, "Adaptive Face Recognition
Using Adversarial Information Network", IEEE Transactions on Image Processing, vol. 31, 2022, arXiv
2305.13605), whose abstract says only that a GCN predicts linkage likelihoods between target samples for
pseudo-labels: that this GCN is L-GCN, with L-GCN's subgraphs, layers and training, is our reconstruction
(AIN has no public code). Per pivot p an Instance Pivot Subgraph (IPS) is built from the kNN graph: p, its
k1 nearest neighbours (1-hop) and their k2 nearest neighbours (2-hop). Node features are offsets from the
pivot (x_node - x_p); each node links to its u nearest neighbours that are inside the IPS, the adjacency is
symmetrised and row-normalised. Four graph-conv layers h' = ReLU([h, A h] W + b) and a small MLP classify
every (p, 1-hop) edge as same/different identity.

Deviations from the paper, each for a measured reason:
- node input is [x_node - x_p, cos(x_node, x_p)]: the explicit similarity hands the network the
  quantity a threshold baseline uses; from the offset alone a first *linear* layer cannot form its norm;
- the loss weighs the two edge classes equally (``balance``): wrong links cost precision through
  chaining, and negatives are the minority class among kNN edges;
- CPU-sized widths (64, 64, 32, 32) instead of (512, 512, 256, 256), Adam instead of SGD, and a
  smaller default IPS (k1=20, k2=2, u=3 instead of 80-200, 10, 10) so that 100k faces cluster in
  under a minute on two CPU threads (measured, unloaded: k2=2 35 s, k2=3 49 s end to end, with the
  same pairwise F within seed noise on a development set).

What limits it on the synthetic benchmark is the size of the labelled source, not training length:
the offsets let the network memorise source identities (an edge MLP on them reached train AUC 0.99
and held-out AUC 0.85, below the raw cosine's 0.89). Held-out edge AUC was 0.926 / 0.943 / 0.960
with 20k / 40k / 80k source faces, while 8 epochs instead of 4 on 20k did not help.

Layout (fixed, vectorised over a batch of pivots): position 0 is the pivot, positions 1..k1 the 1-hop
nodes in kNN order, then k1*k2 2-hop slots; a repeated node keeps its first slot and its later copies
become padding (node id -1, all-zero adjacency row and column), so M = 1 + k1 + k1*k2 is an upper bound
on the node count and no per-pivot Python loop is needed.

Inference shortcuts (exact, not approximations):
- in eval mode the input BatchNorm is a fixed affine map, so the first layer's products with the
  offsets equal differences of one global projection ``Z = (x / sigma) W`` taken at the node and at the
  pivot; ``Z`` is computed once for all N rows instead of once per (pivot, node) pair;
- a graph conv is computed as ``h W_self + A (h W_nbr)`` (same weights as the concatenation, no
  [B, M, 2d] copy), and the last one only for the 1-hop rows the classifier reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from faceops.cluster.knn import knn

__all__ = ["RECORD_FORMAT", "LinkageGCN", "build_ips", "ips_size", "predict_links", "train_linkage_gcn"]

RECORD_FORMAT = "faceops.linkage_gcn/1"


def ips_size(k1: int, k2: int) -> int:
    """Upper bound on the IPS node count: pivot + k1 one-hop + k1*k2 two-hop slots."""
    return 1 + k1 + k1 * k2


def _ips_nodes(nbrs: np.ndarray, pivots: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """[B, M] node ids in the fixed layout, repeats and missing neighbours as -1."""
    b, m = len(pivots), ips_size(k1, k2)
    hop1 = nbrs[pivots, :k1]
    hop1 = np.where(hop1 < 0, pivots[:, None], hop1)  # a missing neighbour becomes a duplicate of p
    hop2 = nbrs[hop1, :k2].reshape(b, k1 * k2)
    hop2 = np.where(hop2 < 0, pivots[:, None], hop2)
    cand = np.concatenate([pivots[:, None], hop1, hop2], axis=1)
    # mark every repeat of an id within a row (stable sort keeps the first slot as the original)
    order = np.argsort(cand, axis=1, kind="stable")
    srt = np.take_along_axis(cand, order, 1)
    dup = np.zeros((b, m), bool)
    np.put_along_axis(dup, order[:, 1:], srt[:, 1:] == srt[:, :-1], 1)
    return np.where(dup, -1, cand)


def build_ips(
    nbrs: np.ndarray, pivots: np.ndarray, *, k1: int, k2: int, u: int
) -> tuple[np.ndarray, torch.Tensor]:
    """Instance pivot subgraphs for a batch of pivots.

    Args:
        nbrs: [N, K] kNN ids of every node (self excluded, best first, -1 = missing), K >= max(k1, k2, u).
        pivots: [B] pivot ids.
        k1: 1-hop neighbours per pivot.
        k2: 2-hop neighbours per 1-hop node.
        u: active connections: each node links to its u nearest neighbours found in the IPS.

    Returns:
        nodes [B, M] int64 global ids (-1 = padding), M = ips_size(k1, k2); adj [B, M, M] float32
        tensor, symmetric before row normalisation, rows summing to 1 (0 for padding and isolated nodes).
    """
    if nbrs.shape[1] < max(k1, k2, u) or min(k1, k2, u) < 1:
        raise ValueError(f"need 1 <= k1, k2, u <= K={nbrs.shape[1]}; got k1={k1}, k2={k2}, u={u}")
    n = nbrs.shape[0]
    pivots = np.asarray(pivots, dtype=np.int64)
    b, m = len(pivots), ips_size(k1, k2)
    nodes = _ips_nodes(nbrs, pivots, k1, k2)

    # local slot of each node's u nearest neighbours, looked up by (row, id) keys in one sorted array
    keys = np.where(nodes >= 0, np.arange(b, dtype=np.int64)[:, None] * (n + 1) + nodes, -1).ravel()
    key_order = np.argsort(keys)
    sorted_keys = keys[key_order]
    nb = nbrs[np.maximum(nodes, 0), :u]  # [B, M, u]
    query = np.arange(b, dtype=np.int64)[:, None, None] * (n + 1) + nb
    pos = np.clip(np.searchsorted(sorted_keys, query), 0, b * m - 1)
    hit = (sorted_keys[pos] == query) & (nb >= 0) & (nodes >= 0)[:, :, None]
    bi, ii, ui = np.nonzero(hit)
    jj = key_order[pos[bi, ii, ui]] - bi * m  # slot within the row

    adj = torch.zeros(b, m, m)
    bi, ii, jj = (torch.from_numpy(a) for a in (bi, ii, jj))
    adj[bi, ii, jj] = 1.0
    adj[bi, jj, ii] = 1.0  # symmetric: a link in either direction
    deg = adj.sum(2, keepdim=True)
    # a node with no in-IPS neighbour (possible when u < k2) keeps an all-zero row instead of 0/0
    return nodes, adj.div_(deg.clamp_min_(1.0))


def _conv(layer: nn.Linear, h: torch.Tensor, adj: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
    """ReLU([h, A h] W + b) as h W_self + A (h W_nbr), optionally only for ``rows`` of the output."""
    d = h.shape[-1]
    w_self, w_nbr = layer.weight[:, :d], layer.weight[:, d:]
    nbr = adj @ (h @ w_nbr.T)
    if rows is not None:
        h, nbr = h[:, rows], nbr[:, rows]
    return F.relu(torch.addmm(layer.bias, h.reshape(-1, d), w_self.T).view(*nbr.shape) + nbr)


class LinkageGCN(nn.Module):
    """Graph-conv stack + edge classifier over instance pivot subgraphs.

    Node input = [x_node - x_pivot, cos(x_node, x_pivot)] (D + 1 values; see the module docstring).
    The IPS shape it was trained with (k1, k2, u) is part of the model: inference uses the same.
    ``config`` is JSON-able and ``LinkageGCN(**config)`` rebuilds the architecture; ``to_record`` /
    ``from_record`` add the weights for ``torch.save`` / ``torch.load(weights_only=True)``.

    Args:
        in_dim: embedding dimension D.
        dims: output width of each graph-conv layer.
        cls_hidden: hidden width of the edge classifier.
        k1, k2, u: IPS shape (see ``build_ips``).
    """

    def __init__(self, in_dim: int = 512, dims: Sequence[int] = (64, 64, 32, 32), cls_hidden: int = 32,
                 k1: int = 20, k2: int = 2, u: int = 3):
        super().__init__()
        if min(k1, k2, u) < 1 or k2 > k1 or u > k1:
            raise ValueError(f"need 1 <= k2, u <= k1; got k1={k1}, k2={k2}, u={u}")
        self.config: dict[str, Any] = {"in_dim": in_dim, "dims": list(dims), "cls_hidden": cls_hidden,
                                       "k1": k1, "k2": k2, "u": u}
        self.in_dim, self.dims, self.k1, self.k2, self.u = in_dim, tuple(dims), k1, k2, u
        self.norm = nn.BatchNorm1d(in_dim + 1, affine=False)
        widths = (in_dim + 1, *dims)
        self.convs = nn.ModuleList(nn.Linear(2 * a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.classifier = nn.Sequential(nn.Linear(dims[-1], cls_hidden), nn.PReLU(), nn.Linear(cls_hidden, 2))

    def to_record(self) -> dict[str, Any]:
        """Plain config + state_dict: saves with ``torch.save``, loads with ``weights_only=True``."""
        return {"format": RECORD_FORMAT, "config": dict(self.config), "state_dict": self.state_dict()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, device: str | torch.device = "cpu") -> LinkageGCN:
        """Rebuild a model saved by ``to_record`` (in eval mode, on ``device``)."""
        if record.get("format") != RECORD_FORMAT:
            raise ValueError(f"record format {record.get('format')!r} is not {RECORD_FORMAT!r}; "
                             "only load linkage-GCN records that LinkageGCN.to_record wrote")
        model = cls(**record["config"])
        model.load_state_dict(record["state_dict"])
        return model.to(device).eval()

    def _tail(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        for conv in self.convs[1:-1]:
            h = _conv(conv, h, adj)
        h = _conv(self.convs[-1], h, adj, rows=slice(1, self.k1 + 1))  # only the rows the classifier reads
        return self.classifier(h)

    @staticmethod
    def _gather(x: torch.Tensor, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Node rows [B, M, D] (padding reads the pivot, so its offset is 0) and pivot rows [B, 1, D]."""
        ids = torch.where(nodes >= 0, nodes, nodes[:, :1])
        return x[ids], x[nodes[:, :1]]

    def forward(self, x: torch.Tensor, nodes: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """Edge logits from raw features (training path; also valid in eval mode).

        Args:
            x: [N, D] all features (or any table that ``nodes`` indexes).
            nodes: [B, M] ids, -1 = padding, M = ips_size(k1, k2).
            adj: [B, M, M] row-normalised adjacency.

        Returns:
            logits [B, k1, 2] for the (pivot, 1-hop) edges; class 1 = same identity.
        """
        valid = nodes >= 0
        xn, xp = self._gather(x, nodes)
        feats = torch.cat([xn - xp, (xn * xp).sum(-1, keepdim=True)], dim=-1)  # [B, M, D + 1]
        h = torch.zeros_like(feats)
        h[valid] = self.norm(feats[valid])  # statistics over real nodes only
        return self._tail(_conv(self.convs[0], h, adj), adj)

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode input BN folded into the first layer: self and neighbour weights [d1, D + 1]."""
        if self.training:
            raise RuntimeError("the projected path folds the input BatchNorm's running statistics; call model.eval() first")
        inv = torch.rsqrt(self.norm.running_var + self.norm.eps)
        w = self.convs[0].weight  # [d1, 2 (D + 1)]: self half then neighbour half
        half = self.in_dim + 1
        return w[:, :half] * inv, w[:, half:] * inv

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Global first-layer projection [N, 2 d1] of the offset part, for ``forward_projected``."""
        ws, wn = self._folded()
        d = self.in_dim
        return torch.cat([x @ ws[:, :d].T, x @ wn[:, :d].T], dim=1)

    def forward_projected(
        self, x: torch.Tensor, z: torch.Tensor, nodes: torch.Tensor, adj: torch.Tensor
    ) -> torch.Tensor:
        """Same logits as ``forward`` in eval mode, with ``z = project(x)`` (see the module docstring)."""
        ws, wn = self._folded()
        d, d1 = self.in_dim, self.dims[0]
        ids = torch.where(nodes >= 0, nodes, nodes[:, :1])
        cos = torch.bmm(x[ids], x[nodes[:, 0]].unsqueeze(2))  # [B, M, 1]
        zi = z[ids]
        mean = self.norm.running_mean
        # W' BN(f) = W'_off (x_node - x_piv) + W'_cos cos - W' mean, with W' = W / sigma (folded)
        self_term = zi[..., :d1] - zi[:, :1, :d1] + cos * ws[:, d] - mean @ ws.T
        nbr_in = zi[..., d1:] - zi[:, :1, d1:] + cos * wn[:, d] - mean @ wn.T
        h = F.relu(self_term + adj @ nbr_in + self.convs[0].bias)
        return self._tail(h, adj)


def _edge_targets(labels: np.ndarray, nodes: np.ndarray, k1: int) -> np.ndarray:
    """[B, k1] 1 = same identity as the pivot, 0 = different, -1 = padding (ignored)."""
    hop = nodes[:, 1 : k1 + 1]
    same = (labels[np.maximum(hop, 0)] == labels[nodes[:, :1]]).astype(np.int64)
    return np.where(hop >= 0, same, -1)


def train_linkage_gcn(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    k1: int = 20,
    k2: int = 2,
    u: int = 3,
    dims: Sequence[int] = (64, 64, 32, 32),
    cls_hidden: int = 32,
    epochs: int = 4,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    balance: bool = True,
    seed: int = 0,
    knn_index: str = "auto",
    device: str | torch.device = "cpu",
) -> LinkageGCN:
    """Train a LinkageGCN on a labelled source (edge label = same identity).

    Optimiser: Adam, learning rate divided by 10 for the last quarter of the steps (the paper uses
    SGD 0.01 decayed at epochs 1, 2, 3 of 4; with few CPU epochs that decays before the small model
    has learnt, and Adam needs no per-dataset lr search).

    Args:
        features: [N, D] L2-normalised embeddings of the labelled source.
        labels: [N] identity per row.
        k1, k2, u: IPS shape (see ``build_ips``), stored in the model.
        dims, cls_hidden: model widths (see ``LinkageGCN``).
        epochs: passes over all pivots.
        batch_size: pivots per step.
        lr, weight_decay: Adam settings.
        balance: weigh same/different edges equally in the loss (by their frequency in the source).
        seed: seeds pivot order and weight init.
        knn_index: kNN backend for the training graph (``knn.INDEXES``).
        device: torch device.

    Returns:
        the trained model in eval mode, on ``device``.
    """
    labels = np.asarray(labels)
    if len(labels) != len(features):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels; pass one label per row")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    nbrs, _ = knn(features, k1, index=knn_index, seed=seed, device=device)
    x = torch.as_tensor(features, dtype=torch.float32, device=device)
    model = LinkageGCN(x.shape[1], dims, cls_hidden, k1=k1, k2=k2, u=u).to(device)
    weight = None
    if balance:
        pos = float((labels[nbrs] == labels[:, None]).mean())
        weight = torch.tensor([0.5 / max(1 - pos, 1e-3), 0.5 / max(pos, 1e-3)], device=device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [round(0.75 * epochs * steps_per_epoch)], gamma=0.1)
    model.train()
    for _ in range(epochs):
        for piv in np.array_split(rng.permutation(len(x)), steps_per_epoch):
            nodes, adj = build_ips(nbrs, piv, k1=k1, k2=k2, u=u)
            target = torch.as_tensor(_edge_targets(labels, nodes, k1), device=device)
            logits = model(x, torch.as_tensor(nodes, device=device), adj.to(device))
            loss = F.cross_entropy(logits.reshape(-1, 2), target.ravel(), weight=weight, ignore_index=-1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def predict_links(
    model: LinkageGCN, features: np.ndarray, nbrs: np.ndarray, *, batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Link probability of every (pivot, 1-hop) edge, each node serving as pivot once.

    Args:
        model: a trained LinkageGCN (switched to eval mode here); its k1, k2, u shape the subgraphs.
        features: [N, D] embeddings to cluster (same space as training).
        nbrs: [N, K] their kNN ids (``knn``), K >= model.k1.
        batch_size: pivots per batch (memory ~ batch x M^2 floats).

    Returns:
        edges [E, 2] (pivot, neighbour) and p(same identity) [E] float32; (i, j) and (j, i) may both
        appear (``propagate.merge_duplicate_edges`` merges them: mean or max).
    """
    model.eval()
    device = next(model.parameters()).device
    x = torch.as_tensor(features, dtype=torch.float32, device=device)
    z = model.project(x)  # once for all rows: the bulk of the first layer
    k1 = model.k1
    edges, scores = [], []
    for s in range(0, len(x), batch_size):
        piv = np.arange(s, min(s + batch_size, len(x)))
        nodes, adj = build_ips(nbrs, piv, k1=k1, k2=model.k2, u=model.u)
        logits = model.forward_projected(x, z, torch.as_tensor(nodes, device=device), adj.to(device))
        p = torch.softmax(logits, -1)[..., 1].cpu().numpy()
        hop = nodes[:, 1 : k1 + 1]
        ok = hop >= 0
        edges.append(np.stack([np.broadcast_to(piv[:, None], hop.shape)[ok], hop[ok]], 1))
        scores.append(p[ok])
    return np.concatenate(edges), np.concatenate(scores).astype(np.float32)
