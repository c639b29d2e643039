"""Restore the data and models of a faceops version (``faceops checkout``) without moving HEAD.

Why :func:`checkout_version` restores files instead of moving HEAD: the branch stays where it is (the
serve loop keeps committing to it, never to a detached HEAD), the code stays current (``dvc status`` then
says honestly which stages today's code would re-run), and ``git status`` shows the restored version as an
ordinary change: committing it (the next recorded version) is a forward-only rollback, like ``git revert``,
and checking out the latest version undoes it. The version last restored is remembered in
``.faceops/checkout.json`` (:func:`restored_baseline`) so that "uncommitted changes" means changes against
what was restored.

Callers hold the workspace lock (flows.workspace.workspace_lock) around these functions.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from faceops.io.atomic import atomic_write_bytes
from flows.dvc_sync import cached_outputs, checkout_outputs, dirty_outputs
from flows.gitrepo import VersionError, changed_paths, head_commit, read_blobs, repo_prefix, tree_files, worktree_files
from flows.history import Version, resolve_version
from flows.runlog import run_logger
from flows.workspace import STATE_DIR

__all__ = ["checkout_state_path", "checkout_version", "restored_baseline"]

log = logging.getLogger("faceops.versioning")

CHECKOUT_STATE = "checkout.json"


def checkout_state_path(root: Path) -> Path:
    """Where the version last restored is remembered (``.faceops/checkout.json``)."""
    return root / STATE_DIR / CHECKOUT_STATE


def restored_baseline(root: Path, head: str | None) -> str | None:
    """The commit the pipeline files should equal: the version last restored, while HEAD has not moved."""
    path = checkout_state_path(root)
    if path.is_file():
        state = json.loads(path.read_text())
        if state.get("head") == head:
            return state["restored"]
    return head


def checkout_version(workspace: Path, ref: str, *, force: bool = False) -> Version:
    """Restore the data and models of a version: its pipeline files from git, then its outputs from DVC.

    HEAD and the code stay where they are (see the module docstring); checking out the latest version
    (or HEAD) returns to it. On any failure the workspace is put back as it was.

    Args:
        workspace: workspace root.
        ref: a version number ("7" or "v7"), a tag ("model@v2") or a commit sha.
        force: discard uncommitted changes to pipeline files and DVC outputs instead of refusing.

    Raises:
        VersionError: unknown ref, uncommitted changes (without ``force``), or DVC objects neither in
            the cache nor on a remote.
    """
    root = Path(workspace).resolve()
    number, sha, subject = resolve_version(root, ref)
    head = head_commit(root)
    baseline = restored_baseline(root, head)
    if not force:
        dirty = changed_paths(tree_files(root, baseline), worktree_files(root))
        dirty += [f"{p} (DVC output)" for p in dirty_outputs(root)]
        if dirty:
            listed = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
            raise VersionError(
                f"uncommitted changes to pipeline files: {listed}. Nothing was changed; record them as a "
                "version (or undo them) first, or pass --force to discard them"
            )
    outs_before = cached_outputs(root)
    _restore_files(root, sha, baseline)
    try:
        checkout_outputs(root, force)
    except VersionError as err:
        _restore_files(root, baseline, sha)
        try:
            checkout_outputs(root, force)
        except VersionError as again:
            raise VersionError(f"{err}. Restoring the previous state failed too: {again}") from err
        raise VersionError(f"{err}. Nothing was changed: the workspace was put back as it was") from err
    outs_after = cached_outputs(root)
    for path in sorted(outs_before - outs_after):
        if not any(_overlaps(path, other) for other in outs_after):
            _remove_output(root / path)
    state = checkout_state_path(root)
    if sha == head:
        state.unlink(missing_ok=True)
    else:
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"head": head, "restored": sha}) + "\n")
    run_logger(log).info("restored data and models of %s (%s)", f"v{number}" if number else ref, sha[:8])
    return Version(number, sha, subject)


def _restore_files(root: Path, target: str, baseline: str | None) -> None:
    """Make the pipeline files equal those of ``target``; files of ``baseline`` absent in it are removed."""
    wanted = tree_files(root, target)
    present = worktree_files(root)
    prefix = repo_prefix(root)
    stale = [p for p in wanted if present.get(p) != wanted[p]]
    blobs = read_blobs(root, (f"{target}:{prefix}{p}" for p in stale))
    for path in stale:
        dest = root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob = blobs[f"{target}:{prefix}{path}"]
        assert blob is not None, f"ls-tree listed {path} in {target} but cat-file did not find it"
        atomic_write_bytes(dest, blob)
    for path in sorted(set(tree_files(root, baseline)) - set(wanted)):
        (root / path).unlink(missing_ok=True)
        _remove_empty_parents(root, (root / path).parent)


def _remove_empty_parents(root: Path, folder: Path) -> None:
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _remove_output(path: Path) -> None:
    """Remove an output the restored version does not have (its bytes stay in the DVC cache)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
