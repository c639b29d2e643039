"""The low-resolution recognition protocol: verification and LR-vs-HR identification at several face resolutions.

LRFR (Ling, Lu, Xu, Deng et al., "Dive into the Resolution Augmentations and Metrics in Low Resolution Face
Recognition: A Plain yet Effective New Baseline", AAAI 2023 workshop, arXiv:2302.05621) reports LFW-style
verification as the test resolution falls from 112 px and SCface / TinyFace identification of low-resolution
probes against high-resolution galleries. Our protocol on any labelled split (ours: the paper's test sets are
not ours to ship; its XQLFW protocol compares a degraded face with a clear one, as here):

- at each resolution ``r`` (px for 112 px faces, scaled to the image size) every face is degraded to ``r`` px
  and back up by the one antialiased bicubic (``faceops.sr.degrade``);
- verification: pairs drawn as the ``evaluate`` stage draws them, over all identities (groups ignored;
  ``faceops.eval.evaluate.verification_pairs``), the first face of each pair at full resolution, the second
  degraded; k-fold accuracy (``kfold_accuracy``);
- identification: the gallery is each identity's first face (by sample id) at full resolution, the probes are
  its other faces degraded; rank-1 = share of probes whose most similar gallery face is their identity's;
- optionally the degraded probe is super-resolved first (an ``sr`` model, ``faceops.sr.inference``: the
  ``r`` px face up by its scale, then bicubic to the image size), and both results are reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceops.data.loader import make_loader
from faceops.eval.evaluate import predict, verification_pairs
from faceops.eval.verification import cosine_scores, kfold_accuracy
from faceops.sr.degrade import resize_bicubic, scaled_side
from faceops.sr.inference import super_resolve
from faceops.train.batch import normalize_images

__all__ = ["embed_faces", "lowres_protocol", "rank1", "read_faces"]

#: The plot row's fields besides ``resolution``; one a run cannot measure is ``None`` (DVC plots need every field
#: its dvc.yaml entry names in every row).
_ROW_FIELDS = ("verif_acc", "rank1", "sr_verif_acc", "sr_rank1")


def read_faces(urls: Sequence[Path], batch_size: int = 64) -> tuple[torch.Tensor, list[dict], list[str]]:
    """Every face of the shards ``urls`` in file order: (uint8 [N, 3, S, S], label dicts, sample ids)."""
    images, metas, keys = [], [], []
    for batch in make_loader(list(urls), batch_size=batch_size, num_workers=0):
        images.append(batch["image"].contiguous())
        metas += list(batch["meta"])
        keys += list(batch["key"])
    if not images:
        raise ValueError(f"no faces in {len(urls)} shard files for the low-resolution protocol")
    return torch.cat(images), metas, keys


def embed_faces(model: torch.nn.Module, images: torch.Tensor, *, batch_size: int, device: str = "cpu",
                autocast_dtype: torch.dtype | None = None) -> np.ndarray:  # fmt: skip
    """L2-normalised recognition embeddings of uint8 faces [N, 3, H, W] -> [N, D] float32 (``predict``)."""
    batches = ({"image": images[i : i + batch_size], "meta": [{}] * len(images[i : i + batch_size]),
                "key": [str(k) for k in range(i, min(i + batch_size, len(images)))]}
               for i in range(0, len(images), batch_size))  # fmt: skip
    return predict(model, batches, normalize=normalize_images, device=device, autocast_dtype=autocast_dtype).embeddings


def rank1(probes: np.ndarray, gallery: np.ndarray, probe_ids: Sequence[int], gallery_ids: Sequence[int]) -> float:
    """Share of probe embeddings [P, D] whose most cosine-similar gallery embedding [G, D] has their identity."""
    nearest = np.argmax(probes @ gallery.T, axis=1)  # embeddings are L2-normalised
    return float(np.mean(np.asarray(gallery_ids)[nearest] == np.asarray(probe_ids)))


def _gallery_split(identities: Sequence[str | None], keys: Sequence[str]) -> tuple[list[int], list[int]]:
    """(gallery, probe) indices: each identity with >= 2 faces gives its first face (by key) to the gallery."""
    by_identity: dict[str, list[int]] = {}
    for i in sorted(range(len(keys)), key=lambda i: keys[i]):
        if identities[i] is not None:
            by_identity.setdefault(identities[i], []).append(i)
    kept = [members for _, members in sorted(by_identity.items()) if len(members) >= 2]
    return [m[0] for m in kept], [i for m in kept for i in m[1:]]


def lowres_protocol(
    model: torch.nn.Module, images: torch.Tensor, metas: Sequence[Mapping[str, Any]], keys: Sequence[str], *,
    resolutions: Sequence[int], n_pairs: int, folds: int, seed: int, batch_size: int, device: str = "cpu",
    autocast_dtype: torch.dtype | None = None, sr_model: torch.nn.Module | None = None,
) -> tuple[dict[str, float | int], list[dict[str, float | int | None]]]:  # fmt: skip
    """Verification accuracy and rank-1 at each resolution (and after super-resolution, given ``sr_model``).

    Args:
        model: the recognition model, on ``device``.
        images, metas, keys: the split's faces (uint8 [N, 3, S, S]), label dicts and sample ids.
        resolutions: test resolutions in px for 112 px faces (scaled to S).
        n_pairs, folds, seed: verification pairs, k-fold count, pair seed (as the stage's verification).
        batch_size, device, autocast_dtype: how the models run.
        sr_model: a super-resolution network (``scale``, ``rgb_range``) on ``device``, or None.

    Returns:
        ``(metrics, rows)``: ``lowres/<r>/verif/acc``, ``lowres/<r>/rank1`` (+ ``lowres/<r>/sr/...``) with
        ``lowres/pairs``, ``lowres/gallery``, ``lowres/probes``; one plot row per resolution (``resolution``,
        ``verif_acc``, ``rank1``, ``sr_verif_acc``, ``sr_rank1``; ``None`` where not measured). Metric keys are
        absent when the split allows no pairs (or no gallery), as for the standard verification.
    """
    side = images.shape[-1]
    identities = [m.get("identity") for m in metas]
    labelled = np.asarray([i for i, name in enumerate(identities) if name is not None], np.int64)
    a, b, same = verification_pairs([identities[i] for i in labelled], [None] * len(labelled), n_pairs=n_pairs,
                                    seed=seed)  # fmt: skip
    a, b = labelled[a], labelled[b]
    gallery, probes = _gallery_split(identities, keys)
    names = sorted({identities[i] for i in gallery})
    gallery_ids = [names.index(identities[i]) for i in gallery]
    probe_ids = [names.index(identities[i]) for i in probes]
    run = {"batch_size": batch_size, "device": device, "autocast_dtype": autocast_dtype}
    full = embed_faces(model, images, **run)
    metrics: dict[str, float | int] = {"lowres/pairs": len(same), "lowres/gallery": len(gallery),
                                       "lowres/probes": len(probes)}  # fmt: skip
    rows = []
    for resolution in resolutions:
        low_side = scaled_side(resolution, side)
        low = resize_bicubic(images, low_side)
        variants = {"": resize_bicubic(low, side)}
        if sr_model is not None and low_side < side:
            variants["sr/"] = resize_bicubic(super_resolve(sr_model, low, batch_size=batch_size, device=device), side)
        elif sr_model is not None:
            variants["sr/"] = variants[""]
        row: dict[str, float | int | None] = {"resolution": resolution, **dict.fromkeys(_ROW_FIELDS)}
        for prefix, degraded in variants.items():
            emb = embed_faces(model, degraded, **run)
            key = f"lowres/{resolution}/{prefix}"
            if len(same) >= 4:
                acc = kfold_accuracy(cosine_scores(np.concatenate([full, emb]), a, b + len(full)), same,
                                     folds=min(folds, len(same) // 2))[0]  # fmt: skip
                metrics[f"{key}verif/acc"] = row[f"{prefix.replace('/', '_')}verif_acc"] = acc
            if len(gallery) >= 2 and probes:
                metrics[f"{key}rank1"] = row[f"{prefix.replace('/', '_')}rank1"] = rank1(
                    emb[probes], full[gallery], probe_ids, gallery_ids
                )
        rows.append(row)
    return metrics, rows
