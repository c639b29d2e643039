"""Finished-run cache: a computing stage's outputs kept under ``<cache>/<fingerprint>/`` and copied back.

Why: DVC re-runs a stage whenever any of its dependencies changes, and folders such as
``data/shards`` or ``data/raw`` change as a whole when any source gets a photo, even a source the
stage does not read. A stage that fingerprints exactly what decides its result (the params it
reads, the bytes of the data it reads, the code that runs, device type and torch version:
:func:`fingerprint`) keeps its finished outputs under ``cache/<fingerprint>/`` and, when the same
fingerprint comes back, copies them back byte for byte instead of computing them again
(:func:`reuse_or_run`). The most recently used ``KEEP_FINISHED`` runs are kept per cache folder; delete
a folder to force that run to happen again.

The code part of a fingerprint is an input (``code``): which files a stage runs is the caller's
knowledge (the stages read it from dvc.yaml), not the library's.

A restore must cost next to nothing, since after new photos arrive every stage downstream of them is
re-run by DVC and most only restore. So nothing here imports torch (2-4 s per stage process):
:func:`faceops.runtime.decisive_versions` reads the libraries' versions from their files and :func:`device_type` asks torch
only where a GPU may be present; callers import their heavy libraries inside the function that
computes (tests/test_incremental.py checks that a restore never imports torch).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from faceops.io.atomic import atomic_directory, atomic_write_bytes
from faceops.io.digest import run_fingerprint, sha256_file
from faceops.io.layout import SHARD_INDEX
from faceops.io.shards import read_index, split_urls
from faceops.runtime import decisive_versions

__all__ = [
    "KEEP_FINISHED", "device_type", "fingerprint", "is_finished", "prune_finished", "restore_finished",
    "reuse_or_run", "shard_digests", "split_digests", "store_finished",
]  # fmt: skip

#: Finished runs kept per cache folder (least recently used go first).
KEEP_FINISHED = 4

#: Device files of the GPU drivers torch can use on Linux (NVIDIA, AMD ROCm, WSL's GPU bridge). Where
#: none exists, ``torch.cuda.is_available()`` is False, so ``device_type`` need not import torch.
_GPU_DEVICE_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def device_type() -> str:
    """``"cuda"`` when torch can use a GPU here, else ``"cpu"``: the device a stage computes on.

    On Linux without any GPU driver's device file the answer is ``"cpu"`` without importing torch;
    elsewhere torch decides.
    """
    if sys.platform.startswith("linux") and not any(os.path.exists(p) for p in _GPU_DEVICE_FILES):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fingerprint(name: str, parts: Sequence[object], *, code: str, device: str) -> str:
    """The key of a run: ``name`` (the stage), ``parts`` (params, seed, data digests: what decides the
    outputs), ``code`` (a digest of the code that runs), the ``device`` type and the versions of the
    libraries that decide output bytes (``faceops.runtime.decisive_versions``: torch, numpy, OpenCV ...),
    so an upgraded library never gets a run made with the old one back."""
    return run_fingerprint(name, *parts, code, device, decisive_versions())


def shard_digests(urls: Sequence[Path]) -> list[tuple[str, str]]:
    """``(file name, sha256 hex)`` of each shard in ``urls``: what a run really reads, byte for byte.

    ``index.json`` lists shard names and counts only, so relabelled samples or re-aligned faces would
    leave it unchanged; the content hashes do not.
    """
    return [(url.name, sha256_file(url)) for url in urls]


def split_digests(shards: Path, source: str, splits: Sequence[str]) -> dict[str, object]:
    """The bytes a run reads from one source's shard set (``shards/<source>/``): its index and the
    shards of ``splits`` (None for a split the source does not have)."""
    folder = shards / source
    present = read_index(folder)["splits"]
    return {"index": sha256_file(folder / SHARD_INDEX),
            **{split: shard_digests(split_urls(folder, split)) if split in present else None for split in splits}}


def store_finished(entry: Path, outputs: Mapping[str, Path]) -> None:
    """Keep copies of a finished run's ``outputs`` (name -> file or folder) under ``entry``, atomically."""
    with atomic_directory(entry) as staging:
        for name, path in outputs.items():
            if path.is_dir():
                shutil.copytree(path, staging / name)
            else:
                shutil.copy2(path, staging / name)


def is_finished(entry: Path, names: Iterable[str]) -> bool:
    """Whether ``entry`` holds a finished run (``store_finished`` writes it whole or not at all)."""
    return all((entry / name).exists() for name in names)


def restore_finished(entry: Path, outputs: Mapping[str, Path]) -> None:
    """Put the copies kept under ``entry`` back at ``outputs``, byte for byte.

    Each output is replaced atomically, so a kill leaves every output either old or restored.
    """
    for name, path in outputs.items():
        if (entry / name).is_dir():
            with atomic_directory(path) as staging:
                shutil.copytree(entry / name, staging, dirs_exist_ok=True)
        else:
            atomic_write_bytes(path, (entry / name).read_bytes())
    os.utime(entry)  # most recently used: pruned last


def prune_finished(cache: Path, keep: int = KEEP_FINISHED) -> list[Path]:
    """Remove all but the ``keep`` most recently used finished runs under ``cache``; return the removed."""
    entries = sorted((p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime_ns, reverse=True) if cache.is_dir() else []  # fmt: skip
    for stale in entries[keep:]:
        shutil.rmtree(stale, ignore_errors=True)
    return entries[keep:]


def reuse_or_run(entry: Path, outputs: Mapping[str, Path], run: Callable[[], None], *,
                 keep: int = KEEP_FINISHED) -> bool:  # fmt: skip
    """Restore ``outputs`` from the finished run kept at ``entry``, or call ``run`` (which writes them) and
    keep them there, pruning ``entry``'s cache folder to the ``keep`` most recently used runs.

    Args:
        entry: ``<cache>/<fingerprint>`` of this run (:func:`fingerprint`).
        outputs: name in the cache -> the output file or folder.
        run: computes and writes ``outputs``.

    Returns:
        True when the outputs were restored, False when ``run`` ran.
    """
    if is_finished(entry, outputs):
        restore_finished(entry, outputs)
        return True
    run()
    store_finished(entry, outputs)
    prune_finished(entry.parent, keep)
    return False
