"""The images the ``sr`` stage learns from and is scored on: aligned faces in shards, or any image folder.

Shards: one split's shard files (``faceops.io.shards.split_urls``) trains, another is held out. A folder
(a source under data/raw, any layout): every image file below it, sorted; a file is held out when the hash of
its relative path says so (``faceops.data.split.assign_split``), so adding images never moves old ones
between the two sets. Images keep their own sizes (uint8 RGB ``[3, H, W]`` each).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from faceops.data.loader import make_loader
from faceops.data.split import assign_split
from faceops.io.images import ImageRejected, read_image

__all__ = ["IMAGE_SUFFIXES", "folder_files", "load_images"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".ppm")
#: Largest image read from a folder (pixels): the ingest default, so a decompression bomb is refused.
MAX_PIXELS = 40_000_000


def folder_files(folder: Path, heldout_fraction: float) -> tuple[list[Path], list[Path]]:
    """``(train, held_out)`` image files under ``folder`` (suffixes :data:`IMAGE_SUFFIXES`), each sorted.

    Raises:
        FileNotFoundError: ``folder`` is missing or holds no image file.
        ValueError: one of the two sets would be empty.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"no image folder at {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder} holds no image file ({', '.join(IMAGE_SUFFIXES)})")
    fractions = {"train": 1.0 - heldout_fraction, "test": heldout_fraction}
    held = {p for p in files if assign_split(p.relative_to(folder).as_posix(), fractions) == "test"}
    train, held_out = [p for p in files if p not in held], [p for p in files if p in held]
    if not train or not held_out:
        raise ValueError(f"{len(files)} images under {folder} give {len(train)} to train and {len(held_out)} held "
                         "out; add images or change sr.heldout_fraction")  # fmt: skip
    return train, held_out


def load_images(paths: Sequence[Path]) -> list[torch.Tensor]:
    """Every image of ``paths`` (shard ``.tar`` files: all their faces in file order; else image files).

    Raises:
        ValueError: no image at all, or a file that is not a usable image (naming it).
    """
    images: list[torch.Tensor] = []
    shards = [p for p in paths if Path(p).suffix == ".tar"]
    if shards:
        for batch in make_loader(shards, batch_size=64, num_workers=0):
            images += list(batch["image"].contiguous())
    for path in (Path(p) for p in paths if Path(p).suffix != ".tar"):
        try:
            images.append(torch.from_numpy(read_image(path, max_pixels=MAX_PIXELS)).permute(2, 0, 1).contiguous())
        except ImageRejected as err:
            raise ValueError(f"{path} is not a usable image: {err}") from None
    if not images:
        raise ValueError(f"no image in {len(paths)} input files")
    return images
