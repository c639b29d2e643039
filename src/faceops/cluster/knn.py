"""k-nearest-neighbour graphs over L2-normalised embeddings (cosine = inner product).

Backends (``index=``):
- ``"exact"``: batched torch matmul + topk on ``device``. Exact. On this project's CPUs it is ~4x
  faster than faiss-cpu's ``IndexFlatIP``, whose bundled OpenBLAS runs a generic kernel
  (environment-checks §7/§10), and it is quadratic in time, so it is for N up to ~50k.
- ``"flat"``: faiss ``IndexFlatIP`` (exact), moved to all GPUs when faiss-gpu sees one.
- ``"ivf"``: faiss ``IndexIVFFlat`` with ``nlist ~ 8 sqrt(N)`` lists (learn-to-cluster's rule) and
  ``nprobe`` lists scanned per query. The coarse k-means and the list assignment of every vector are
  matrix products, done here in torch (spherical k-means); faiss only scans the inverted lists
  (``add_preassigned`` / ``search_preassigned``), the part it is fast at. Approximate.
- ``"hnsw"``: faiss ``IndexHNSWFlat``; approximate, no training, slower to build.
- ``"auto"``: ``"flat"`` on a faiss GPU, else ``"exact"`` up to ``exact_max`` samples, else ``"ivf"``.

Every backend searches in query batches of ``batch_size``, so extra memory is O(batch x N) for exact
and O(batch x nlist) for IVF, never O(N^2). The query itself is removed from its own neighbour list.
faiss is optional at import time (``pip install faceops[cpu]`` or ``faceops[gpu]``).
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import torch

__all__ = ["INDEXES", "import_faiss", "knn", "spherical_kmeans"]

INDEXES = ("auto", "exact", "flat", "ivf", "hnsw")


def import_faiss() -> ModuleType:
    """Import faiss or explain how to get it (it is an optional extra: CPU and GPU wheels clash)."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "faiss is needed for this kNN index but is not installed; install exactly one of "
            "`pip install faceops[cpu]` (faiss-cpu) or `pip install faceops[gpu]` (faiss-gpu), "
            "or use index='exact' (torch)"
        ) from err
    return faiss


def _drop_self(nbrs: np.ndarray, sims: np.ndarray, first_id: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own id from its k+1 results; where absent (ties, approximate search) drop the last."""
    own = nbrs == (first_id + np.arange(nbrs.shape[0]))[:, None]
    own[~own.any(1), -1] = True
    own &= np.cumsum(own, axis=1) == 1  # at most one column per row
    keep = np.argsort(own, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(nbrs, keep, 1), np.take_along_axis(sims, keep, 1)


def _exact_torch(x: torch.Tensor, k: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    nbrs, sims = [], []
    for s in range(0, x.shape[0], batch_size):
        val, idx = torch.topk(x[s : s + batch_size] @ x.T, k, dim=1)
        nbrs.append(idx.cpu().numpy())
        sims.append(val.float().cpu().numpy())
    return np.concatenate(nbrs), np.concatenate(sims)


def spherical_kmeans(
    x: torch.Tensor, n_clusters: int, *, n_iter: int = 10, seed: int = 0, batch_size: int = 16384
) -> torch.Tensor:
    """Cosine k-means on unit rows [N, D] -> unit centroids [n_clusters, D].

    Initialised from a seeded random subset; an emptied centroid keeps its previous position.
    """
    g = torch.Generator().manual_seed(seed)
    cent = x[torch.randperm(x.shape[0], generator=g)[:n_clusters].to(x.device)].clone()
    for _ in range(n_iter):
        acc = torch.zeros_like(cent)
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size]
            acc.index_add_(0, (xb @ cent.T).argmax(1), xb)
        norm = acc.norm(dim=1, keepdim=True)
        cent = torch.where(norm > 0, acc / norm.clamp_min(1e-12), cent)
    return cent


def _ivf(x: torch.Tensor, k: int, *, nlist: int | None, nprobe: int, batch_size: int, seed: int,
         train_per_list: int) -> tuple[np.ndarray, np.ndarray]:
    faiss = import_faiss()
    from faiss.contrib.ivf_tools import add_preassigned, search_preassigned

    n, d = x.shape
    nlist = nlist or max(1, min(n // 4, 8 * round(math.sqrt(n))))
    nprobe = min(nprobe, nlist)
    g = torch.Generator().manual_seed(seed)
    train = x[torch.randperm(n, generator=g)[: train_per_list * nlist].to(x.device)]
    cent = spherical_kmeans(train, nlist, seed=seed)
    # one pass over the data gives both each vector's list (for adding) and its nprobe lists (for searching)
    probe = np.empty((n, nprobe), np.int64)
    coarse = np.empty((n, nprobe), np.float32)
    for s in range(0, n, batch_size):
        val, idx = torch.topk(x[s : s + batch_size] @ cent.T, nprobe, dim=1)
        probe[s : s + batch_size] = idx.cpu().numpy()
        coarse[s : s + batch_size] = val.float().cpu().numpy()
    quantizer = faiss.IndexFlatIP(d)
    quantizer.add(cent.cpu().numpy().astype(np.float32))
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    xn = x.cpu().numpy().astype(np.float32)
    add_preassigned(index, xn, np.ascontiguousarray(probe[:, 0]))
    index.nprobe = nprobe
    nbrs, sims = [], []
    for s in range(0, n, batch_size):
        dist, idx = search_preassigned(index, xn[s : s + batch_size], k, probe[s : s + batch_size],
                                       coarse[s : s + batch_size])
        nbrs.append(idx)
        sims.append(dist)
    return np.concatenate(nbrs), np.concatenate(sims)


def _faiss_index(xn: np.ndarray, index: str, hnsw_m: int, ef_search: int):
    faiss = import_faiss()
    d = xn.shape[1]
    if index == "hnsw":
        idx = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efSearch = ef_search
    else:
        idx = faiss.IndexFlatIP(d)
        if faiss.get_num_gpus() > 0:
            idx = faiss.index_cpu_to_all_gpus(idx)
    idx.add(xn)
    return idx


def knn(
    features: np.ndarray | torch.Tensor,
    k: int,
    *,
    index: str = "auto",
    nprobe: int = 32,
    nlist: int | None = None,
    train_per_list: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 128,
    exact_max: int = 50_000,
    batch_size: int = 4096,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of every row by inner product, the row itself excluded.

    Args:
        features: [N, D] embeddings, expected L2-normalised (then similarity = cosine).
        k: neighbours per row (< N).
        index: one of ``INDEXES`` (see the module docstring).
        nprobe: IVF lists scanned per query (recall/speed knob).
        nlist: IVF list count; default ``8 * round(sqrt(N))``.
        train_per_list: IVF k-means trains on ``train_per_list * nlist`` random rows.
        hnsw_m: HNSW graph degree.
        ef_search: HNSW search breadth.
        exact_max: largest N for which ``"auto"`` picks exact search on CPU.
        batch_size: query rows per search batch (bounds memory).
        seed: seeds the IVF k-means.
        device: torch device for the matrix products (``"exact"``, ``"ivf"``).

    Returns:
        neighbours [N, k] int64 (descending similarity; -1 where an approximate index found fewer),
        similarities [N, k] float32.
    """
    if index not in INDEXES:
        raise ValueError(f"unknown kNN index {index!r}; expected one of {INDEXES}")
    x = torch.as_tensor(features, dtype=torch.float32, device=device)
    n = x.shape[0]
    if x.ndim != 2 or not 0 < k < n:
        raise ValueError(f"need features [N, D] with 0 < k < N; got shape {tuple(x.shape)} and k={k}")
    if index == "auto":
        try:
            gpu = import_faiss().get_num_gpus() > 0
        except ImportError:
            gpu = False
        index = "flat" if gpu else ("exact" if n <= exact_max or x.device.type != "cpu" else "ivf")
    if index == "exact":
        nbrs, sims = _exact_torch(x, k + 1, batch_size)
    elif index == "ivf":
        nbrs, sims = _ivf(x, k + 1, nlist=nlist, nprobe=nprobe, batch_size=batch_size, seed=seed,
                          train_per_list=train_per_list)
    else:
        xn = np.ascontiguousarray(x.cpu().numpy())
        idx = _faiss_index(xn, index, hnsw_m, ef_search)
        parts = [idx.search(xn[s : s + batch_size], k + 1) for s in range(0, n, batch_size)]
        sims, nbrs = (np.concatenate(p) for p in zip(*parts))
    out = [_drop_self(nbrs[s : s + batch_size], sims[s : s + batch_size], s, k) for s in range(0, n, batch_size)]
    return np.concatenate([o[0] for o in out]).astype(np.int64), np.concatenate([o[1] for o in out]).astype(np.float32)
