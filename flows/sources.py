"""Raw sources under data/raw/<name>/: register a new one, or add an inbox batch as a new version of one.

A source is a DVC-tracked folder (``data/raw/<name>.dvc``) listed in params.yaml ``ingest.sources``; the
``ingest`` stage reads it in the layout its ``format`` names. Adding files re-runs ``dvc add`` so the new
version has its own hash in the .dvc file (the git commit of that file is the version; see
flows/versioning.py).

Inbox batches never lose a file: a file leaves the inbox only after its copy is in data/raw and DVC has
hashed the folder; a file that cannot be taken stays where it is, with its reason in the result.
Duplicates are recognised by content (sha256), against the source and within the batch.

Call these under the workspace lock (flows.workspace.workspace_lock): they rewrite params.yaml, data/raw
and .dvc files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.core import ParamsError
from faceops.config.params import parse_params
from faceops.io.atomic import atomic_directory
from faceops.io.digest import sha256_file
from faceops.io.layout import COCO_ANNOTATIONS, LABELS_CSV
from flows.inbox import FileSig, looks_in_progress
from flows.workspace import STATE_DIR

__all__ = ["AddResult", "SourceError", "add_files_to_source", "dvc_add", "register_source"]

RAW_DIR = Path("data") / "raw"
#: Format given to a source that first appears through the inbox: images without labels.
INBOX_FORMAT = "unlabeled"
#: The annotation file a layout owns; a dropped one replaces the source's (the old one stays in history).
ANNOTATION_FILES = {"labels_csv": LABELS_CSV, "coco_keypoints": COCO_ANNOTATIONS}
_CHUNK = 1 << 20


class SourceError(ValueError):
    """A source cannot be registered or extended as asked; the message says why and what to do."""


@dataclass(frozen=True)
class AddResult:
    """What :func:`add_files_to_source` did with each file of a batch (POSIX paths relative to the batch folder).

    Attributes:
        source: the source name.
        created: True when the source was new and got registered in params.yaml.
        added: files copied into data/raw/<source>/ and removed from the inbox.
        duplicates: files whose bytes the source (or an earlier file of the batch) already holds; removed
            from the inbox, since nothing is lost.
        refused: ``{path: reason}`` for files left in the inbox.
    """

    source: str
    created: bool
    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


def dvc_add(workspace: Path, target: Path) -> None:
    """Track ``target`` (a file or folder inside ``workspace``) with DVC, writing ``<target>.dvc``.

    A ``dvc add`` subprocess in the workspace, not DVC's Python API: the API resolves paths against the
    process's working directory, which a flow or a test must not change.

    Raises:
        RuntimeError: dvc add failed; the message ends with its output.
    """
    done = subprocess.run([sys.executable, "-m", "dvc", "add", str(target.relative_to(workspace))],
                          cwd=workspace, capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"dvc add {target} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")


def register_source(workspace: Path, name: str, fmt: str, fill: Callable[[Path], None], *, replace: bool) -> Path:
    """Create data/raw/NAME with ``fill(folder)``, list it in params.yaml and track it with DVC.

    params.yaml is validated with the new source before anything is written, so a bad name or format
    fails cleanly; a failure while filling leaves neither a half-copied folder nor a params change.

    Raises:
        SourceError: the params would be invalid, or the folder exists and ``replace`` is False.
    """
    params_path = workspace / "params.yaml"
    raw = yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}
    sources = [s for s in raw.setdefault("ingest", {}).get("sources", []) if s.get("name") != name]
    raw["ingest"]["sources"] = sources + [{"name": name, "format": fmt}]
    try:
        parse_params(raw, origin=str(params_path))
    except ParamsError as err:
        raise SourceError(str(err)) from None
    target = workspace / RAW_DIR / name
    if target.exists() and not replace:
        raise SourceError(f"{target} exists; pass --replace to overwrite it or choose another --name")
    with atomic_directory(target) as staging:
        fill(staging)
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    dvc_add(workspace, target)
    return target


def _pipeline_outputs(workspace: Path) -> set[Path]:
    """Paths written by dvc.yaml stages (relative to the workspace): not sources anyone may add to."""
    spec = yaml.safe_load((workspace / "dvc.yaml").read_text(encoding="utf-8")) or {}
    outs = set()
    for stage in (spec.get("stages") or {}).values():
        for out in stage.get("outs", []):
            outs.add(Path(next(iter(out)) if isinstance(out, dict) else out))
    return outs


def _source_format(workspace: Path, source: str) -> str | None:
    raw = yaml.safe_load((workspace / "params.yaml").read_text(encoding="utf-8")) or {}
    for spec in (raw.get("ingest") or {}).get("sources", []):
        if spec.get("name") == source:
            return spec.get("format")
    return None


def _hashes_in(folder: Path) -> dict[str, str]:
    """sha256 -> relpath of every visible file under ``folder`` (what the ingest stage would scan)."""
    hashes: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        relpath = path.relative_to(folder).as_posix()
        if path.is_file() and not path.is_symlink() and not any(p.startswith(".") for p in relpath.split("/")):
            hashes.setdefault(sha256_file(path), relpath)
    return hashes


def _copy_hashing(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst`` and return the sha256 of the bytes copied (one read of the file)."""
    digest = hashlib.sha256()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as reader, open(dst, "wb") as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    return digest.hexdigest()


def _signature(path: Path) -> FileSig | None:
    try:
        stat = path.lstat()
    except FileNotFoundError:
        return None
    return FileSig(size=stat.st_size, mtime_ns=stat.st_mtime_ns)


def _check_target(workspace: Path, source: str) -> tuple[str, bool]:
    """The format of ``source`` and whether it is new; refuse sources nobody may add files to."""
    if not re.fullmatch(SOURCE_NAME_PATTERN, source):
        raise SourceError(f"source name {source!r} must match {SOURCE_NAME_PATTERN}; rename the inbox folder")
    rel_target = RAW_DIR / source
    if rel_target in _pipeline_outputs(workspace):
        raise SourceError(
            f"{rel_target} is written by a pipeline stage (dvc.yaml), not a source you can add files to; "
            f"drop the files into another inbox folder (a new name makes a new source)"
        )
    fmt = _source_format(workspace, source)
    target = workspace / rel_target
    if fmt is None and target.exists():
        raise SourceError(f"{target} exists but params.yaml does not list source {source!r}; "
                          "register it (faceops ingest) or move the folder away")  # fmt: skip
    if fmt is not None and not target.is_dir():
        raise SourceError(f"source {source!r} is listed in params.yaml but {target} is missing; "
                          "run `dvc pull` (or `dvc checkout`) first")  # fmt: skip
    return fmt or INBOX_FORMAT, fmt is None


def add_files_to_source(workspace: Path, source: str, folder: Path, files: Mapping[str, FileSig]) -> AddResult:
    """Add settled inbox files to data/raw/<source>/ as a new DVC-tracked version of that source.

    Each file keeps its path relative to ``folder``. It is copied only if its size and mtime still equal
    ``files[path]`` (what was seen when the batch settled) before and after the copy, so a file that
    changed meanwhile stays for the next batch. A new source is registered with format ``unlabeled``; an
    existing one keeps its format (a dropped labels.csv / annotations.json replaces the layout's file).

    Args:
        workspace: the workspace root.
        source: the source name (the inbox folder's name).
        folder: the inbox folder of the batch (``<inbox>/<source>``).
        files: settled files, relative path -> signature seen when settled.

    Returns:
        What happened to each file.

    Raises:
        SourceError: the source cannot take files (a pipeline output such as ``sample``, an invalid name,
            an unregistered folder in the way, or a registered source that is not checked out).
    """
    fmt, created = _check_target(workspace, source)
    target = workspace / RAW_DIR / source
    result = AddResult(source=source, created=created)
    staging_root = workspace / STATE_DIR / "staging"
    for stale in staging_root.glob(f"{source}-*"):  # left by a killed run; the lock says none is running
        shutil.rmtree(stale, ignore_errors=True)
    staging = staging_root / f"{source}-{uuid.uuid4().hex[:8]}"
    try:
        known = {} if created else _hashes_in(target)
        staged = _stage(folder, files, staging, target, known, ANNOTATION_FILES.get(fmt), result)
        if created and staged:
            register_source(workspace, source, fmt, lambda d: _move_all(staging, d, staged), replace=False)
        elif staged or result.duplicates:
            # Re-hash on duplicates too: they may be copies an interrupted earlier call made but never tracked.
            _move_all(staging, target, staged)
            dvc_add(workspace, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for relpath in [*result.added, *result.duplicates]:
        if _signature(folder / relpath) == files[relpath]:  # changed after the copy: keep the newer bytes
            (folder / relpath).unlink()
    _remove_empty_dirs(folder)
    return result


def _stage(
    folder: Path,
    files: Mapping[str, FileSig],
    staging: Path,
    target: Path,
    known: dict[str, str],
    annotation_file: str | None,
    result: AddResult,
) -> list[str]:
    """Copy the acceptable files of the batch into ``staging``; sort every file into ``result``."""
    staged = []
    for relpath in sorted(files):
        src = folder / relpath
        if looks_in_progress(relpath) or files[relpath].size == 0:
            result.refused[relpath] = "temporary, hidden or empty file: not ingested"
            continue
        if src.is_symlink() or not src.is_file():
            result.refused[relpath] = "not a regular file (links are not followed); copy the file itself"
            continue
        if _signature(src) != files[relpath]:
            result.refused[relpath] = "changed since the batch settled; it is taken once it settles again"
            continue
        digest = _copy_hashing(src, staging / relpath)
        if _signature(src) != files[relpath]:
            (staging / relpath).unlink()
            result.refused[relpath] = "changed while it was copied; it is taken once it settles again"
        elif digest in known:
            (staging / relpath).unlink()
            result.duplicates.append(relpath)
        elif (target / relpath).exists() and relpath != annotation_file:
            (staging / relpath).unlink()
            result.refused[relpath] = (
                f"{target.name}/{relpath} already exists with different content; rename the file and drop it again"
            )
        else:
            known[digest] = relpath
            staged.append(relpath)
            result.added.append(relpath)
    return staged


def _move_all(staging: Path, destination: Path, relpaths: list[str]) -> None:
    for relpath in relpaths:
        (destination / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging / relpath, destination / relpath)


def _remove_empty_dirs(folder: Path) -> None:
    """Remove folders emptied by the ingest below ``folder`` (the source folder itself stays)."""
    for dirpath, _dirs, _files in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        if Path(dirpath) != folder and not os.listdir(dirpath):
            os.rmdir(dirpath)
