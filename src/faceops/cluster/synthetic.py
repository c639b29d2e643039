"""Seeded synthetic face-embedding-like data for clustering tests and benchmarks.

Real face embeddings (ArcFace-style, L2-normalised) look roughly like this: each identity is a
von Mises-Fisher-like blob on the unit sphere whose concentration varies from identity to identity
(a celebrity with thousands of studio photos vs. a few blurry frames), identities come with a few
pose/age modes, some identities sit close to others (relatives, look-alikes, label noise), and
identity sizes are long-tailed. A single global similarity threshold cannot serve all of these at
once; that is the gap learned linkage (L-GCN) is meant to close, so the generator reproduces it:

- sizes: discretised Pareto ``min_size * U^(-1/tail)``, clipped to [min_size, max_size];
- per identity a centre; a fraction ``overlap`` of identities is placed near an earlier identity's
  centre (cosine ``overlap_cos``), the rest are random (nearly orthogonal in 512-d);
- 1..``max_modes`` modes per identity at cosine ``mode_cos`` from its centre;
- per identity a target cosine ``t`` to its mode, uniform in ``spread``; a sample is
  ``normalize(mode + sqrt(1/t^2 - 1) * g / sqrt(d))`` with ``g ~ N(0, I)``, whose cosine to the mode
  is close to t in high dimension (the vMF-like part).
"""

from __future__ import annotations

import numpy as np

__all__ = ["make_identities"]


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _tilt(base: np.ndarray, cos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at the given cosine [M] from each unit row of base [M, D], random direction."""
    u = rng.standard_normal(base.shape).astype(np.float32)
    u = _normalize(u - (u * base).sum(1, keepdims=True) * base)
    c = cos[:, None].astype(np.float32)
    return c * base + np.sqrt(1 - c * c) * u


def make_identities(
    n: int,
    *,
    dim: int = 512,
    seed: int = 0,
    min_size: int = 2,
    max_size: int = 200,
    tail: float = 1.1,
    overlap: float = 0.3,
    overlap_cos: tuple[float, float] = (0.35, 0.55),
    max_modes: int = 3,
    mode_cos: float = 0.8,
    spread: tuple[float, float] = (0.5, 0.8),
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` unit-norm embeddings with identity labels.

    Args:
        n: number of samples (the last identity is truncated to fit, so it may be smaller than min_size).
        dim: embedding dimension.
        seed: seeds a fresh ``np.random.Generator``; the output depends on nothing else.
        min_size: smallest identity size.
        max_size: largest identity size.
        tail: Pareto exponent of the size distribution (smaller = heavier tail).
        overlap: fraction of identities placed near an earlier identity.
        overlap_cos: cosine range between such an identity's centre and its neighbour's.
        max_modes: modes per identity are drawn uniformly from 1..max_modes.
        mode_cos: cosine between an identity centre and each of its modes.
        spread: range of the per-identity cosine between a sample and its mode (lower = looser).

    Returns:
        features [n, dim] float32, unit rows, shuffled; labels [n] int64 identity ids from 0.
    """
    if n < 1 or dim < 2 or not 1 <= min_size <= max_size:
        raise ValueError(f"need n >= 1, dim >= 2, 1 <= min_size <= max_size; got n={n}, dim={dim}, "
                         f"min_size={min_size}, max_size={max_size}")
    rng = np.random.default_rng(seed)
    # identity sizes: draw generously, then cut at n samples
    draw = np.floor(min_size * rng.random(n) ** (-1.0 / tail)).clip(min_size, max_size).astype(np.int64)
    n_ids = int(np.searchsorted(np.cumsum(draw), n)) + 1
    sizes = draw[:n_ids].copy()
    sizes[-1] -= int(sizes.sum()) - n

    centres = _normalize(rng.standard_normal((n_ids, dim)).astype(np.float32))
    near = np.flatnonzero(rng.random(n_ids) < overlap)
    near = near[near > 0]
    parents = (rng.random(near.size) * near).astype(np.int64)  # an earlier identity
    # sequential so that chains of look-alikes are possible; only |near| steps, each vectorised over D
    for child, parent in zip(near, parents):
        centres[child] = _tilt(centres[parent][None], rng.uniform(*overlap_cos, 1), rng)[0]

    n_modes = rng.integers(1, max_modes + 1, n_ids)
    mode_owner = np.repeat(np.arange(n_ids), n_modes)
    modes = _tilt(centres[mode_owner], np.full(mode_owner.size, mode_cos), rng)
    first_mode = np.concatenate([[0], np.cumsum(n_modes)[:-1]])

    labels = np.repeat(np.arange(n_ids), sizes)
    mode = first_mode[labels] + (rng.random(n) * n_modes[labels]).astype(np.int64)
    t = rng.uniform(*spread, n_ids)[labels].astype(np.float32)
    sigma = np.sqrt(1 / t**2 - 1)[:, None]
    x = modes[mode] + sigma * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    order = rng.permutation(n)
    return _normalize(x[order]).astype(np.float32), labels[order]
