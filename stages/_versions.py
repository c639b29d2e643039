"""A file as a promotion tag's version recorded it (what `train` fine-tunes from and `monitor` compares with).

The tag's commit pins the file's hash in its dvc.lock, so DVC serves exactly those bytes from the local cache
(or the default remote); nothing here trusts the working tree, which may hold newer bytes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from faceops.io.atomic import atomic_directory

__all__ = ["file_at_version"]


def file_at_version(path: Path, tag: str, scratch: Path, *, param: str) -> Path:
    """``path`` (relative to the repository root, where DVC runs stage commands) at ``tag``, copied to
    ``scratch/<tag>/<name>`` and returned.

    Args:
        path: a DVC-tracked file (``models/swinface/model.pt``) or a git-tracked one.
        tag: a git tag or revision (``model@v3``).
        scratch: a folder outside DVC's outputs for the copy.
        param: the params key that named the tag, for the error message.

    Raises:
        SystemExit: the tag does not exist or DVC cannot find the file it pins (the message says which).
    """
    import dvc.api  # only a run that reads a promoted version needs DVC's API (slow to import)

    target = scratch / tag / path.name
    try:
        with dvc.api.open(path.as_posix(), rev=tag, mode="rb") as stream, atomic_directory(target.parent) as tmp:
            with (tmp / path.name).open("wb") as copy:
                shutil.copyfileobj(stream, copy)
    except Exception as err:  # DVC raises several types (RevError, PathMissingError, FileMissingError, ...)
        raise SystemExit(
            f"{param} {tag!r}: cannot read {path} at that version ({type(err).__name__}: {err}); check "
            "`git tag -l 'model@v*'`, and `dvc pull` if the file is only on a remote"
        ) from None
    return target
