"""Git plumbing for faceops versions: running git, the pipeline files of a commit or of the worktree, blobs, tags.

A version commit holds only the files the pipeline owns (:func:`is_pipeline_file`): dvc.yaml, dvc.lock,
params.yaml, ``*.dvc`` pointers and ``.gitignore`` files under data/ and models/, metrics/, plots/ and
``models/*_live``. Every function here takes the workspace root; git is asked about the
:data:`PIPELINE_PREFIXES` only, and pathspecs are literal.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "PIPELINE_PREFIXES",
    "ROOT_FILES",
    "VersionError",
    "changed_paths",
    "git_identity_env",
    "head_commit",
    "is_pipeline_file",
    "read_blobs",
    "repo_prefix",
    "run_git",
    "tags_by_commit",
    "tree_files",
    "worktree_files",
]

ROOT_FILES = ("dvc.yaml", "dvc.lock", "params.yaml")
#: Top-level names that can hold pipeline files; git is asked about these only.
PIPELINE_PREFIXES = (*ROOT_FILES, "data", "models", "metrics", "plots")
#: Identity for version commits and tags when git has none configured (a fresh container, a CI runner).
FALLBACK_IDENTITY = {"name": "faceops", "email": "faceops@localhost"}


class VersionError(RuntimeError):
    """A version cannot be recorded, found or restored; the message says why and what to do."""


def is_pipeline_file(path: str) -> bool:
    """Whether ``path`` (relative to the workspace, ``/``-separated) belongs in a version commit."""
    parts = path.split("/")
    if len(parts) == 1:
        return path in ROOT_FILES
    top = parts[0]
    if top in ("metrics", "plots"):
        return True
    if top in ("data", "models"):
        return parts[-1] == ".gitignore" or path.endswith(".dvc") or (top == "models" and parts[1].endswith("_live"))
    return False


def run_git(root: Path, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> bytes:
    """Run git in ``root``; pathspecs are literal (a file named ``*.dvc`` is just that file)."""
    full_env = {**os.environ, "GIT_LITERAL_PATHSPECS": "1", **(env or {})}
    result = subprocess.run(["git", *args], cwd=root, input=stdin, env=full_env, capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise VersionError(f"`git {' '.join(args[:3])}` failed in {root} (exit {result.returncode}): {message}")
    return result.stdout


def head_commit(root: Path) -> str | None:
    """HEAD's sha, or None in a repository without commits."""
    try:
        return run_git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").decode().strip() or None
    except VersionError:
        return None


def git_identity_env(root: Path) -> dict[str, str]:
    """Author/committer variables for faceops' own commits and tags when git has no identity configured."""
    env: dict[str, str] = {}
    for key in ("name", "email"):
        asked = subprocess.run(["git", "config", "--get", f"user.{key}"], cwd=root, capture_output=True, check=False)
        if asked.returncode != 0 and not os.environ.get(f"GIT_COMMITTER_{key.upper()}"):
            env[f"GIT_AUTHOR_{key.upper()}"] = env[f"GIT_COMMITTER_{key.upper()}"] = FALLBACK_IDENTITY[key]
    return env


def tags_by_commit(root: Path) -> dict[str, list[str]]:
    """``{commit sha: [tag names]}`` of every tag (annotated tags peeled to their commit)."""
    listing = run_git(root, "for-each-ref", "--format=%(refname:short)%09%(objectname)%09%(*objectname)", "refs/tags")
    tags: dict[str, list[str]] = {}
    for line in listing.decode().splitlines():
        name, obj, peeled = line.split("\t")
        tags.setdefault(peeled or obj, []).append(name)
    return tags


def repo_prefix(root: Path) -> str:
    """The workspace's path inside the git repository ('' at the top; 'sub/' for ``dvc init --subdir``)."""
    return run_git(root, "rev-parse", "--show-prefix").decode().strip()


def tree_files(root: Path, rev: str | None) -> dict[str, str]:
    """Pipeline files of commit ``rev`` as ``{path: blob sha}`` (empty for None)."""
    if rev is None:
        return {}
    listing = run_git(root, "ls-tree", "-r", "-z", rev, "--", *PIPELINE_PREFIXES).decode()
    files = {}
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        if meta.split()[1] == "blob" and is_pipeline_file(path):
            files[path] = meta.split()[2]
    return files


def worktree_files(root: Path) -> dict[str, str]:
    """Pipeline files on disk (tracked, or untracked and not ignored) as ``{path: blob sha}``."""
    listing = run_git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *PIPELINE_PREFIXES)
    paths = sorted({p for p in listing.decode().split("\0") if p and is_pipeline_file(p) and (root / p).is_file()})
    if not paths:
        return {}
    hashes = run_git(root, "hash-object", "--stdin-paths", stdin="\n".join(paths).encode()).decode().split()
    return dict(zip(paths, hashes, strict=True))


def changed_paths(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Sorted paths whose blob differs between two ``{path: blob sha}`` listings (added and removed too)."""
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def read_blobs(root: Path, specs: Iterable[str]) -> dict[str, bytes | None]:
    """``{"REV:path": bytes or None when missing}`` through one ``git cat-file --batch``."""
    specs = list(dict.fromkeys(specs))
    if not specs:
        return {}
    out = run_git(root, "cat-file", "--batch", stdin="".join(f"{s}\n" for s in specs).encode())
    blobs: dict[str, bytes | None] = {}
    pos = 0
    for spec in specs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            blobs[spec] = out[pos : pos + size]
            pos += size + 1
        else:  # "<spec> missing" or a tree
            blobs[spec] = None
    return blobs
