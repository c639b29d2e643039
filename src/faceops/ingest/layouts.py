"""What a source layout says about its files, and the two layouts that need no annotation file.

A layout reader takes the source root and its walked files and returns :class:`Annotations`: the labels
of every file it accepts and the paths it refuses before anything is decoded. The labels of a row
always hold every key its layout provides, ``None`` when unknown. Readers with an annotation file live
beside this module (`faceops.ingest.labels_csv`, `faceops.ingest.coco`); `faceops.ingest.scan` maps each
``fmt`` to its reader.

* ``imagefolder``: ``root/<identity>/<file>`` (deeper folders allowed; the identity is the first
  folder). Labels: ``identity``. A file directly under ``root`` is quarantined as ``no_identity``,
  because an identity-less image would join the identity-based splits by accident.
* ``unlabeled``: every image file anywhere under ``root``, labels ``{"identity": None}``. For photos
  that arrive without any annotation (an inbox drop, a new domain): they go to the ``unlabeled``
  shard split, where ``embed``/``cluster`` give them pseudo-identities and ``keypoints`` landmarks.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceops.ingest.files import Refused

__all__ = [
    "Annotations",
    "Labels",
    "SizeCheck",
    "normalise_relpath",
    "outside_root",
    "read_imagefolder",
    "read_unlabeled",
]

Labels = dict[str, Any]
# (relpath, labels, width, height) -> None when the labels fit the decoded image, else a detail.
SizeCheck = Callable[[str, Labels, int, int], str | None]


def _no_size_check(relpath: str, labels: Labels, width: int, height: int) -> str | None:
    return None


@dataclass
class Annotations:
    """What a layout says about the files: labels to keep, and paths refused before decoding."""

    origin: str  # where labels come from, for messages
    labels: dict[str, Labels] = field(default_factory=dict)
    refused: dict[str, Refused] = field(default_factory=dict)
    check_size: SizeCheck = _no_size_check


def normalise_relpath(raw: str) -> str | None:
    """POSIX relpath as listed in an annotation file, normalised; ``None`` when it leaves the root."""
    norm = posixpath.normpath(raw)
    if raw.startswith("/") or norm in (".", "..") or norm.startswith("../"):
        return None
    return norm


def outside_root(raw: str, origin: str) -> Refused:
    """The refusal of an annotation entry whose path is not inside the source root."""
    return Refused("outside_root", f"{origin} lists {raw!r}, which is not inside the source root")


def read_imagefolder(root: Path, files: list[str]) -> Annotations:
    """Labels of the ``imagefolder`` layout: the first folder is the identity."""
    annotations = Annotations(origin="the imagefolder layout")
    for path in files:
        identity, sep, _ = path.partition("/")
        if sep:
            annotations.labels[path] = {"identity": identity}
        else:
            annotations.refused[path] = Refused(
                "no_identity", "file lies directly under the source root; imagefolder expects <identity>/<file>"
            )
    return annotations


def read_unlabeled(root: Path, files: list[str]) -> Annotations:
    """Labels of the ``unlabeled`` layout: every file, identity unknown."""
    annotations = Annotations(origin="the unlabeled layout")
    annotations.labels.update({path: {"identity": None} for path in files})
    return annotations
