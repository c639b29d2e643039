"""The files of one raw source: which are scanned (the walk) and what one file holds (read, decode, hash).

**What is scanned.** Every file under ``root``, walked in sorted order, except hidden names (a
leading dot, files and folders: ``.git``, ``.DS_Store``, ``.dvc`` ...) and the layout's own
annotation files or folders at the top. A symlink whose target lies outside ``root`` is refused
(``outside_root``); a symlink to a folder inside ``root`` is not followed (``symlink_dir``: its
target is scanned where it really is). A name that is not valid UTF-8 is refused (``bad_filename``),
and so is anything that is not a regular file (``unreadable``).

**Per file** (:func:`inspect_file`): read (refused over ``max_file_bytes`` before reading), fully decoded
by :func:`faceops.io.images.decode_image` (its reasons become quarantine reasons), hashed with sha256.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from faceops.io.images import ImageRejected, decode_image, read_image_bytes, sha256_bytes

__all__ = ["Decoded", "Refused", "inspect_file", "walk"]


@dataclass(frozen=True)
class Decoded:
    """A file that decoded as an acceptable image."""

    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class Refused:
    """Why an entry is quarantined: a reason code from ``QUARANTINE_REASONS`` and a sentence for humans."""

    reason: str
    detail: str


def walk(root: Path, *, skip: Collection[str] = ()) -> tuple[list[str], dict[str, Refused]]:
    """Sorted POSIX relpaths of the regular files under ``root`` (not entering the relpaths in ``skip``), and the
    entries refused on the way."""
    real_root = root.resolve()
    files: list[str] = []
    refused: dict[str, Refused] = {}

    def visit(directory: Path, prefix: str) -> None:
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                relpath = prefix + entry.name
                if entry.name.startswith(".") or relpath in skip:
                    continue
                if not _is_utf8(relpath):
                    shown = relpath.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                    refused[shown] = Refused("bad_filename", "name is not valid UTF-8 (a folder is not entered)")
                elif entry.is_symlink():
                    # Details name the link text, not the resolved absolute path: same bytes on every machine.
                    link, target = os.readlink(entry.path), Path(entry.path).resolve()
                    if not target.is_relative_to(real_root):
                        refused[relpath] = Refused("outside_root", f"symlink to {link!r}, outside the source root")
                    elif target.is_dir():
                        refused[relpath] = Refused(
                            "symlink_dir", f"symlink to folder {link!r}; folder links are not followed"
                        )
                    elif target.is_file():
                        files.append(relpath)
                    else:
                        refused[relpath] = Refused("unreadable", f"broken symlink to {link!r}")
                elif entry.is_dir(follow_symlinks=False):
                    visit(Path(entry.path), relpath + "/")
                elif entry.is_file(follow_symlinks=False):
                    files.append(relpath)
                else:
                    refused[relpath] = Refused("unreadable", "not a regular file (device, socket or pipe)")

    visit(root, "")
    return sorted(files), refused


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def inspect_file(path: Path, *, max_pixels: int, max_file_bytes: int, min_side: int) -> Decoded | Refused:
    """Read, fully decode and hash one file (runs in a worker thread)."""
    try:
        data = read_image_bytes(path, max_bytes=max_file_bytes)
        pixels = decode_image(data, max_pixels=max_pixels, min_side=min_side)  # [H, W, 3]
    except ImageRejected as rejected:
        return Refused(rejected.reason, rejected.detail)
    except OSError as err:
        return Refused("unreadable", f"cannot read the file: {err}")
    except Exception as err:
        err.add_note(f"while ingesting {path}")
        raise
    return Decoded(sha256=sha256_bytes(data), width=int(pixels.shape[1]), height=int(pixels.shape[0]))
