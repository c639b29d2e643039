"""Finished-run cache shared by the stages (``pretrain``, ``train``, ``keypoints``, ``embed``, ``evaluate``, ``cluster``).

Why: DVC re-runs a stage whenever any of its dependencies changes, and folders such as
``data/shards`` or ``data/raw`` change as a whole when any source gets a photo, even a source the
stage does not read. A stage that fingerprints exactly what decides its result (the params it
reads, the bytes of the data it reads, the code that runs, device type and torch version) keeps its
finished outputs under ``cache/<fingerprint>/`` and, when the same fingerprint comes back, copies
them back byte for byte instead of computing them again (``reuse_or_run``). The most recently used
``KEEP_FINISHED`` runs are kept per stage; delete a folder to force that run to happen again.

A restore must cost next to nothing, since after new photos arrive every stage downstream of them is
re-run by DVC and most only restore. So this module and the fingerprint inputs avoid torch (importing
it costs 2-4 s per stage process): :func:`torch_version` reads torch's version file, :func:`device_type`
asks torch only where a GPU may be present, and the stages import their heavy libraries inside the
function that computes (tests/test_incremental.py checks that a restore never imports torch).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from faceops.io.atomic import atomic_directory, atomic_write_bytes
from faceops.io.digest import run_fingerprint, sha256_file
from faceops.io.layout import SHARD_INDEX
from faceops.io.shards import read_index, split_urls
from faceops.runtime import torch_version  # noqa: F401  (re-exported: stages._training, tests)
from stages._common import console

#: Finished runs kept per stage in the cache (least recently used go first).
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


#: The repository this module belongs to: its dvc.yaml lists the code each stage runs.
_REPO = Path(__file__).resolve().parents[1]
#: Top-level folders of a dvc.yaml dep that is code (everything else a stage lists is data).
_CODE_ROOTS = ("stages", "src")


def code_digest(stage: str) -> str:
    """sha256 over the code files that dvc.yaml's ``deps`` of ``stage`` list (a folder: every .py below it).

    Why from dvc.yaml: a cached run must not outlive a change to the code that made it, and dvc.yaml's
    deps are already the one list of that code (derived from the stage's imports and checked by a test:
    ``flows.codedeps``), so the cache reads the same list instead of keeping a second one by hand.
    """
    import yaml

    spec = yaml.safe_load((_REPO / "dvc.yaml").read_text())["stages"].get(stage)
    if spec is None:
        raise KeyError(f"dvc.yaml in {_REPO} has no stage {stage!r}")
    digest = hashlib.sha256()
    for dep in sorted(d for d in spec.get("deps", []) if isinstance(d, str) and d.split("/", 1)[0] in _CODE_ROOTS):
        path = _REPO / dep
        files = sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts) if path.is_dir() else [path]
        for file in files:
            digest.update(f"{file.relative_to(_REPO).as_posix()}:{sha256_file(file)}".encode())
    return digest.hexdigest()


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


def cache_folder(values: list[Path]) -> Path | None:
    """The ``--cache`` argument (zero or one folder; ``parse_args`` gives optional paths as lists)."""
    if len(values) > 1:
        raise SystemExit(f"--cache takes one folder, got {len(values)}: {[str(v) for v in values]}; pass one")
    return values[0] if values else None


def shard_digests(urls: list[Path]) -> list[tuple[str, str]]:
    """``(file name, sha256 hex)`` of each shard in ``urls``: what a run really reads, byte for byte.

    ``index.json`` lists shard names and counts only, so relabelled samples or re-aligned faces would
    leave it unchanged; the content hashes do not.
    """
    return [(url.name, sha256_file(url)) for url in urls]


def split_digests(shards: Path, source: str, splits: Sequence[str]) -> dict[str, object]:
    """The bytes a stage reads from one source's shard set: its index and the shards of ``splits``
    (None for a split the source does not have)."""
    folder = shards / source
    present = read_index(folder)["splits"]
    return {"index": sha256_file(folder / SHARD_INDEX),
            **{split: shard_digests(split_urls(folder, split)) if split in present else None for split in splits}}


def reuse_or_run(
    stage: str, cache: Path | None, parts: Sequence[object], outputs: Mapping[str, Path], run: Callable[[], None],
    *, device: str = "cpu",
) -> bool:  # fmt: skip
    """Run ``run`` (which writes ``outputs``) unless a finished run with the same fingerprint is cached.

    The fingerprint covers ``parts`` (params, seed, data digests: what decides the outputs), the
    stage's code (:func:`code_digest`), the device type it computes on (``device``: :func:`device_type` for a stage
    that uses a GPU when there is one) and torch's version. Without ``cache`` it just runs.

    Returns:
        True when the outputs were restored from the cache, False when ``run`` ran.
    """
    if cache is None:
        run()
        return False
    entry = cache / run_fingerprint(stage, *parts, code_digest(stage), device, torch_version())
    if is_finished(entry, outputs):
        restore_finished(entry, outputs)
        console.print(f"{stage}: same inputs as the finished run {entry.name}: restored its outputs from {entry}")
        return True
    run()
    store_finished(entry, outputs)
    prune_finished(cache)
    return False

