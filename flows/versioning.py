"""Record a faceops version: a git commit of exactly the pipeline files that changed, numbered by a trailer.

Why plain git commits and not DVC experiments: a commit with a ``Faceops-Version: N`` trailer is what
``git log``, ``git push``, CI, code review, ``dvc metrics diff``, ``dvc.api.open(rev=...)`` and tag-based
registries (GTO) already understand, and a teammate gets it with ``git pull && dvc pull``. Experiments live
under ``refs/exps``, are not pushed or fetched by default, do not show in ``git log``, and their queue
(``dvc exp run --queue``, run by Celery workers) has known failures: runs that hang or stop after one or two
experiments without logs (iterative/dvc#8165, #10398), and queued copies of the repository that lack
git-ignored dependencies (#5800). Promotion tags (flows/promotion.py) point at these commits.

A version commit holds only the files the pipeline owns (:func:`flows.gitrepo.is_pipeline_file`):
dvc.yaml, dvc.lock, params.yaml, ``*.dvc`` pointers and ``.gitignore`` files under data/ and models/,
metrics/, plots/ and ``models/*_live``. It is built in a temporary index, so a user's unrelated edits,
staged or not, are neither committed nor disturbed. After committing, the outputs are pushed to the DVC
remote when one is configured (:func:`flows.dvc_sync.push_outputs`).

The rest of the version machinery: flows/gitrepo.py (git plumbing), flows/history.py (listing and
resolving versions), flows/checkout.py (restoring one), flows/dvc_sync.py (DVC push, checkout, pull).
Callers hold the workspace lock (flows.workspace.workspace_lock) around :func:`record_version`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from flows.checkout import checkout_state_path, restored_baseline
from flows.dvc_sync import push_outputs
from flows.gitrepo import (
    changed_paths,
    git_identity_env,
    head_commit,
    read_blobs,
    repo_prefix,
    run_git,
    tree_files,
    worktree_files,
)
from flows.history import METRICS_FILE, TRAILER, Version, numeric_metrics, version_log
from flows.runlog import run_logger

__all__ = ["record_version"]

log = logging.getLogger("faceops.versioning")

MAX_LISTED = 40  # files named in a commit body (a training run rewrites dozens of plot files)


def _outs(lock: object, dvcfiles: Mapping[str, object]) -> dict[str, tuple[str, str]]:
    """``{out path: (owner, hash)}`` from a parsed dvc.lock and parsed ``.dvc`` files (paths to them)."""
    outs: dict[str, tuple[str, str]] = {}
    stages = lock.get("stages", {}) if isinstance(lock, Mapping) else {}
    for stage, entry in stages.items():
        for out in entry.get("outs", []):
            outs[out["path"]] = (f"stage {stage}", _hash(out))
    for dvcfile, content in dvcfiles.items():
        for out in (content or {}).get("outs", []):
            path = os.path.normpath(os.path.join(os.path.dirname(dvcfile), out["path"]))
            outs[path] = (dvcfile, _hash(out))
    return outs


def _hash(out: Mapping) -> str:
    return str(out.get("md5") or out.get("etag") or out.get("checksum") or "?").removesuffix(".dir")


def _parse(blob: bytes | None) -> object:
    return None if blob is None else yaml.safe_load(blob)


@dataclass(frozen=True)
class _OutChange:
    path: str
    owner: str  # "stage train" or the .dvc file
    old: str | None  # content hash, None when the output is new
    new: str | None  # None when the output was removed

    def line(self) -> str:
        return f"{self.path} ({self.owner}): {(self.old or 'new')[:8]} -> {(self.new or 'removed')[:8]}"


def _out_changes(root: Path, base: str | None, changed: list[str]) -> tuple[list[str], list[_OutChange]]:
    """Stages whose dvc.lock entry changed, and the outputs whose hash changed (old vs new dvc.lock/.dvc)."""
    prefix = repo_prefix(root)
    dvcfiles = [p for p in changed if p.endswith(".dvc")]
    old = read_blobs(root, (f"{base}:{prefix}{p}" for p in ["dvc.lock", *dvcfiles])) if base else {}
    old_lock = _parse(old.get(f"{base}:{prefix}dvc.lock"))
    new_lock = _parse((root / "dvc.lock").read_bytes()) if (root / "dvc.lock").is_file() else None
    old_stages = old_lock.get("stages", {}) if isinstance(old_lock, Mapping) else {}
    new_stages = new_lock.get("stages", {}) if isinstance(new_lock, Mapping) else {}
    stages = sorted(s for s in set(old_stages) | set(new_stages) if old_stages.get(s) != new_stages.get(s))
    before = _outs(old_lock, {p: _parse(old.get(f"{base}:{prefix}{p}")) for p in dvcfiles})
    after = _outs(new_lock, {p: _parse((root / p).read_bytes()) for p in dvcfiles if (root / p).is_file()})
    outs = []
    for path in sorted(set(before) | set(after)):
        was, now = before.get(path), after.get(path)
        if was != now:
            owner = (now or was)[0]
            outs.append(_OutChange(path, owner, was and was[1], now and now[1]))
    return stages, outs


def _subject(number: int, reason: str, outs: list[_OutChange], metric: str | None, root: Path) -> str:
    parts = [" ".join(reason.split()) or "pipeline outputs changed"]  # one line: the subject
    if any(o.path.startswith("models/") and not o.path.split("/")[1].endswith("_live") for o in outs):
        parts.append("model changed")
    metrics_path = root / METRICS_FILE
    if metric and metrics_path.is_file():
        try:
            value = numeric_metrics(json.loads(metrics_path.read_text())).get(metric)
        except ValueError:  # a malformed metrics file is the evaluate stage's bug; the version is still worth keeping
            value = None
        if value is not None:
            parts.append(f"{metric} {value:.4g}")
    return f"faceops v{number}: " + "; ".join(parts)


def _default_metric(root: Path) -> str | None:
    """The promotion metric from params.yaml (history and commit subjects lead with it)."""
    from faceops.config.core import ParamsError
    from faceops.config.params import load_params

    try:
        return load_params(root / "params.yaml").ops.promotion.metric
    except (ParamsError, FileNotFoundError, OSError):
        return None


def _commit_only(root: Path, base: str | None, paths: list[str], message: str) -> str:
    """Commit exactly ``paths`` (as on disk) on top of ``base`` without touching other index entries."""
    git_dir = Path(run_git(root, "rev-parse", "--absolute-git-dir").decode().strip())
    index = git_dir / "faceops-version.index"
    env = {"GIT_INDEX_FILE": str(index), **git_identity_env(root)}
    listed = "\0".join(paths).encode()
    try:
        run_git(root, "read-tree", *([base] if base else ["--empty"]), env=env)
        run_git(root, "add", "--all", "--pathspec-from-file=-", "--pathspec-file-nul", stdin=listed, env=env)
        tree = run_git(root, "write-tree", env=env).decode().strip()
        parents = ["-p", base] if base else []
        sha = run_git(root, "commit-tree", tree, *parents, "-F", "-", stdin=message.encode(), env=env).decode().strip()
    finally:
        index.unlink(missing_ok=True)
    run_git(root, "update-ref", "-m", message.splitlines()[0], "HEAD", sha, base or "")
    # the real index now agrees with the new commit for these paths; other staged work stays staged
    run_git(root, "reset", "--quiet", "--pathspec-from-file=-", "--pathspec-file-nul", stdin=listed)
    return sha


def record_version(workspace: Path, reason: str, *, metric: str | None = None, push: bool = True) -> Version | None:
    """Commit the pipeline files that changed since HEAD as the next faceops version.

    Args:
        workspace: workspace root (git + DVC repository).
        reason: what caused this version, the start of the commit subject
            (e.g. "new data in source 'inbox_demo' (+12 files)").
        metric: metric named in the subject; default: params.yaml ``ops.promotion.metric``.
        push: ``dvc push`` after committing when a DVC remote is configured.

    Returns:
        The new version, or None when no pipeline file changed (nothing is committed). A failed push
        keeps the commit and is reported in ``Version.pushed``/``push_error`` and the log.
    """
    root = Path(workspace).resolve()
    base = head_commit(root)
    changed = changed_paths(tree_files(root, base), worktree_files(root))
    if not changed:
        return None
    rows = version_log(root)
    number = 1 + max((n for n, *_ in rows), default=0)
    restored = restored_baseline(root, base)
    stages, outs = _out_changes(root, base, changed)
    subject = _subject(number, reason, outs, metric or _default_metric(root), root)
    body = []
    if restored != base:
        number_of = {sha: n for n, sha, *_ in rows}
        body += [f"Restores the data and models of v{number_of.get(restored, '?')} ({restored[:8]}).", ""]
    if stages:
        body.append("Stages changed in dvc.lock: " + ", ".join(stages))
    if outs:
        body += ["", "Outputs changed:", *(f"  {out.line()}" for out in outs)]
    body += ["", f"Files ({len(changed)}):", *(f"  {path}" for path in changed[:MAX_LISTED])]
    body += [f"  ... and {len(changed) - MAX_LISTED} more"] if len(changed) > MAX_LISTED else []
    message = f"{subject}\n\n" + "\n".join(body).strip("\n") + f"\n\n{TRAILER}: {number}\n"
    sha = _commit_only(root, base, changed, message)
    checkout_state_path(root).unlink(missing_ok=True)  # the restored version is now committed
    logger = run_logger(log)
    logger.info("recorded %s (%s)", subject, sha[:8])
    pushed, error = push_outputs(root) if push else (None, "")
    if pushed is False:
        logger.warning("version v%d is committed (%s) but not pushed: %s", number, sha[:8], error)
    return Version(number, sha, subject, pushed, error)
