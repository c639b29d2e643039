"""Versions of a workspace: git commits made by faceops whose dvc.lock pins the data and model hashes.

Why plain git commits and not DVC experiments: a commit with a ``Faceops-Version: N`` trailer is what
``git log``, ``git push``, CI, code review, ``dvc metrics diff``, ``dvc.api.open(rev=...)`` and tag-based
registries (GTO) already understand, and a teammate gets it with ``git pull && dvc pull``. Experiments live
under ``refs/exps``, are not pushed or fetched by default, do not show in ``git log`` and come with the
queue pains listed in tools-and-peers.md 2.5. Promotion tags (flows/promotion.py) point at these commits.

A version commit holds only the files the pipeline owns (:func:`is_pipeline_file`): dvc.yaml, dvc.lock,
params.yaml, ``*.dvc`` pointers and ``.gitignore`` files under data/ and models/, metrics/, plots/ and
``models/*_live``. It is built in a temporary index, so a user's unrelated edits, staged or not, are
neither committed nor disturbed.

Why :func:`checkout_version` restores files instead of moving HEAD: the branch stays where it is (the
serve loop keeps committing to it, never to a detached HEAD), the code stays current (``dvc status`` then
says honestly which stages today's code would re-run), and ``git status`` shows the restored version as an
ordinary change: committing it (the next recorded version) is a forward-only rollback, like ``git revert``,
and checking out the latest version undoes it. The version last restored is remembered in
``.faceops/checkout.json`` so that "uncommitted changes" means changes against what was restored.

Callers hold the workspace lock (flows.workspace.workspace_lock) around these functions.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from faceops.io.atomic import atomic_write_bytes
from flows.workspace import STATE_DIR

__all__ = [
    "METRICS_FILE",
    "Version",
    "VersionError",
    "VersionInfo",
    "checkout_version",
    "git_identity_env",
    "head_commit",
    "in_prefect_run",
    "is_pipeline_file",
    "list_versions",
    "read_metrics",
    "record_version",
    "run_git",
    "run_logger",
    "tags_by_commit",
]

log = logging.getLogger("faceops.versioning")

TRAILER = "Faceops-Version"
METRICS_FILE = "metrics/evaluate.json"
CHECKOUT_STATE = "checkout.json"
ROOT_FILES = ("dvc.yaml", "dvc.lock", "params.yaml")
#: Top-level names that can hold pipeline files; git is asked about these only.
PIPELINE_PREFIXES = (*ROOT_FILES, "data", "models", "metrics", "plots")
#: Identity for version commits and tags when git has none configured (a fresh container, a CI runner).
FALLBACK_IDENTITY = {"name": "faceops", "email": "faceops@localhost"}
MAX_LISTED = 40  # files named in a commit body (a training run rewrites dozens of plot files)


class VersionError(RuntimeError):
    """A version cannot be recorded, found or restored; the message says why and what to do."""


@dataclass(frozen=True)
class Version:
    """A faceops version commit.

    ``number`` is 0 for a commit faceops did not make (a sha or tag given to checkout). ``pushed`` is None
    when no DVC remote is configured, False when ``dvc push`` failed (``push_error`` says why; the
    commit is kept either way).
    """

    number: int
    sha: str
    subject: str
    pushed: bool | None = None
    push_error: str = ""


@dataclass(frozen=True)
class VersionInfo:
    """One row of the version history: a version commit, its evaluation metrics and its tags."""

    number: int
    sha: str
    date: str
    subject: str
    metrics: dict[str, float] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


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


def in_prefect_run() -> bool:
    """Inside a Prefect flow or task run? Never imports Prefect itself (the CLI must stay fast)."""
    if "prefect" not in sys.modules:
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def run_logger(fallback: logging.Logger) -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run (the line shows in the UI), else ``fallback``."""
    if not in_prefect_run():
        return fallback
    from prefect import get_run_logger

    return get_run_logger()


# ---------------------------------------------------------------------------------------------- git


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


def _prefix(root: Path) -> str:
    """The workspace's path inside the git repository ('' at the top; 'sub/' for ``dvc init --subdir``)."""
    return run_git(root, "rev-parse", "--show-prefix").decode().strip()


def _tree_files(root: Path, rev: str | None) -> dict[str, str]:
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


def _worktree_files(root: Path) -> dict[str, str]:
    """Pipeline files on disk (tracked, or untracked and not ignored) as ``{path: blob sha}``."""
    listing = run_git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *PIPELINE_PREFIXES)
    paths = sorted({p for p in listing.decode().split("\0") if p and is_pipeline_file(p) and (root / p).is_file()})
    if not paths:
        return {}
    hashes = run_git(root, "hash-object", "--stdin-paths", stdin="\n".join(paths).encode()).decode().split()
    return dict(zip(paths, hashes, strict=True))


def _changed(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def _read_blobs(root: Path, specs: Iterable[str]) -> dict[str, bytes | None]:
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


def _numeric(data: object, prefix: str = "") -> dict[str, float]:
    """Flatten nested JSON metrics to ``{a/b: value}``, numbers only (booleans are not metrics)."""
    if isinstance(data, Mapping):
        flat: dict[str, float] = {}
        for key, value in data.items():
            flat.update(_numeric(value, f"{prefix}{key}/"))
        return flat
    if isinstance(data, int | float) and not isinstance(data, bool):
        return {prefix.rstrip("/"): float(data)}
    return {}


def read_metrics(root: Path, revs: Iterable[str]) -> dict[str, dict[str, float] | None]:
    """Metrics of :data:`METRICS_FILE` at each commit: ``{rev: {key: value}}``, None where it is absent."""
    prefix = _prefix(root)
    revs = list(revs)
    blobs = _read_blobs(root, (f"{rev}:{prefix}{METRICS_FILE}" for rev in revs))
    result: dict[str, dict[str, float] | None] = {}
    for rev in revs:
        blob = blobs[f"{rev}:{prefix}{METRICS_FILE}"]
        result[rev] = None if blob is None else _numeric(json.loads(blob))
    return result


# ------------------------------------------------------------------------------------ history


def _log(root: Path, rev: str = "HEAD") -> list[tuple[int, str, str, str]]:
    """``(number, sha, date, subject)`` of the version commits reachable from ``rev``, newest first."""
    if head_commit(root) is None:
        return []
    fmt = f"%H%x1f%cI%x1f%s%x1f%(trailers:key={TRAILER},valueonly,separator=%x2C)%x1e"
    rows = []
    for record in run_git(root, "log", f"--format={fmt}", rev, "--").decode().split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) == 4 and fields[3].strip().isdigit():
            sha, date, subject, number = fields
            rows.append((int(number.strip()), sha, date, subject))
    return rows


def tags_by_commit(root: Path) -> dict[str, list[str]]:
    listing = run_git(root, "for-each-ref", "--format=%(refname:short)%09%(objectname)%09%(*objectname)", "refs/tags")
    tags: dict[str, list[str]] = {}
    for line in listing.decode().splitlines():
        name, obj, peeled = line.split("\t")
        tags.setdefault(peeled or obj, []).append(name)
    return tags


def list_versions(workspace: Path) -> list[VersionInfo]:
    """The faceops versions reachable from HEAD, newest first, with their metrics and tags."""
    root = Path(workspace).resolve()
    rows = _log(root)
    metrics = read_metrics(root, (sha for _, sha, _, _ in rows))
    tags = tags_by_commit(root)
    return [
        VersionInfo(number, sha, date, subject, metrics[sha] or {}, tuple(sorted(tags.get(sha, []))))
        for number, sha, date, subject in rows
    ]


# ------------------------------------------------------------------------------------- record


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
    prefix = _prefix(root)
    dvcfiles = [p for p in changed if p.endswith(".dvc")]
    old = _read_blobs(root, (f"{base}:{prefix}{p}" for p in ["dvc.lock", *dvcfiles])) if base else {}
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
            value = _numeric(json.loads(metrics_path.read_text())).get(metric)
        except ValueError:  # a malformed metrics file is the evaluate stage's bug; the version is still worth keeping
            value = None
        if value is not None:
            parts.append(f"{metric} {value:.4g}")
    return f"faceops v{number}: " + "; ".join(parts)


def _default_metric(root: Path) -> str | None:
    """The promotion metric from params.yaml (history and commit subjects lead with it)."""
    from faceops.config import ParamsError, load_params

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


def _dvc_remote(root: Path) -> tuple[str | None, str]:
    """(remote to push to, why not): the default remote, else the only one; None when there is none."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        default = repo.config["core"].get("remote")
        names = sorted(repo.config.get("remote", {}))
    if default:
        return default, ""
    if len(names) == 1:
        return names[0], ""
    if names:
        return None, f"DVC remotes {names} but no default: set one with `dvc remote default NAME`"
    return None, ""


def _push(root: Path) -> tuple[bool | None, str]:
    """``dvc push`` to the workspace's remote so other machines can ``dvc pull`` this version."""
    remote, why = _dvc_remote(root)
    if remote is None:
        return (False, why) if why else (None, "")
    cmd = [sys.executable, "-m", "dvc", "push", "--remote", remote]
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        return False, f"`dvc push --remote {remote}` failed (exit {result.returncode}):\n{tail}"
    return True, ""


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
    changed = _changed(_tree_files(root, base), _worktree_files(root))
    if not changed:
        return None
    rows = _log(root)
    number = 1 + max((n for n, *_ in rows), default=0)
    restored = _baseline(root, base)
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
    _state_path(root).unlink(missing_ok=True)  # the restored version is now committed
    logger = run_logger(log)
    logger.info("recorded %s (%s)", subject, sha[:8])
    pushed, error = _push(root) if push else (None, "")
    if pushed is False:
        logger.warning("version v%d is committed (%s) but not pushed: %s", number, sha[:8], error)
    return Version(number, sha, subject, pushed, error)


# ------------------------------------------------------------------------------------ checkout


def _resolve(root: Path, ref: str) -> tuple[int, str, str]:
    """``(number, sha, subject)`` for a version number ("7", "v7"), a tag or a sha."""
    rows = _log(root)
    match = re.fullmatch(r"v?(\d+)", ref.strip())
    if match:
        for number, sha, _, subject in rows:
            if number == int(match.group(1)):
                return number, sha, subject
    if ref.startswith("-") or head_commit(root) is None:
        raise VersionError(f"unknown version {ref!r}; known: {_known(rows)}")
    try:
        sha = run_git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except VersionError:
        known = _known(rows)
        raise VersionError(f"unknown version {ref!r}: not a version number, tag or commit; known: {known}") from None
    subject = run_git(root, "log", "-1", "--format=%s", sha, "--").decode().strip()
    number = next((n for n, s, _, _ in rows if s == sha), 0)
    return number, sha, subject


def _known(rows: list[tuple[int, str, str, str]]) -> str:
    return ", ".join(f"v{n}" for n, *_ in reversed(rows)) or "none yet (no faceops version commits)"


def _state_path(root: Path) -> Path:
    return root / STATE_DIR / CHECKOUT_STATE


def _baseline(root: Path, head: str | None) -> str | None:
    """The commit the pipeline files should equal: the version last restored, while HEAD has not moved."""
    path = _state_path(root)
    if path.is_file():
        state = json.loads(path.read_text())
        if state.get("head") == head:
            return state["restored"]
    return head


def _dirty_outputs(root: Path) -> list[str]:
    """DVC outputs whose workspace content matches neither dvc.lock nor the cache (work a checkout would lose)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        status = repo.status()
    dirty = set()
    for entries in status.values():
        for entry in entries:
            if isinstance(entry, dict):
                outs = entry.get("changed outs", {})
                dirty |= {path for path, what in outs.items() if what in ("modified", "not in cache")}
    return sorted(dirty)


def _cached_outs(root: Path) -> set[str]:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        outs = [out for stage in repo.index.stages for out in stage.outs if out.use_cache]
    return {os.path.relpath(out.fs_path, root) for out in outs}


def _restore_files(root: Path, target: str, baseline: str | None) -> None:
    """Make the pipeline files equal those of ``target``; files of ``baseline`` absent in it are removed."""
    wanted = _tree_files(root, target)
    present = _worktree_files(root)
    prefix = _prefix(root)
    stale = [p for p in wanted if present.get(p) != wanted[p]]
    blobs = _read_blobs(root, (f"{target}:{prefix}{p}" for p in stale))
    for path in stale:
        dest = root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob = blobs[f"{target}:{prefix}{path}"]
        assert blob is not None, f"ls-tree listed {path} in {target} but cat-file did not find it"
        atomic_write_bytes(dest, blob)
    for path in sorted(set(_tree_files(root, baseline)) - set(wanted)):
        (root / path).unlink(missing_ok=True)
        _remove_empty_parents(root, (root / path).parent)


def _remove_empty_parents(root: Path, folder: Path) -> None:
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _dvc_message(err: Exception) -> str:
    """DVC's message on one line, without colour codes or its help link."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    return " ".join(line for line in text.splitlines() if line.strip() and "error.dvc.org" not in line)


def _dvc_checkout(root: Path, force: bool) -> None:
    """``dvc checkout``; when the cache lacks objects, ``dvc pull`` them (VersionError if that fails)."""
    from dvc.exceptions import CheckoutError, DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            repo.checkout(force=force)
        return
    except CheckoutError as err:
        missing = ", ".join(sorted(os.path.relpath(os.path.abspath(t), root) for t in err.target_infos))
    except DvcException as err:
        raise VersionError(f"dvc checkout refused: {_dvc_message(err)}") from err
    try:
        with Repo(str(root)) as repo:
            repo.pull(force=force)
    except DvcException as err:
        raise VersionError(
            f"the DVC cache lacks {missing} and `dvc pull` failed ({_dvc_message(err)}); configure the remote "
            "that holds them (`dvc remote add -d NAME URL`) or re-run the pipeline for that version"
        ) from err


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
    number, sha, subject = _resolve(root, ref)
    head = head_commit(root)
    baseline = _baseline(root, head)
    if not force:
        dirty = _changed(_tree_files(root, baseline), _worktree_files(root))
        dirty += [f"{p} (DVC output)" for p in _dirty_outputs(root)]
        if dirty:
            listed = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
            raise VersionError(
                f"uncommitted changes to pipeline files: {listed}. Nothing was changed; record them as a "
                "version (or undo them) first, or pass --force to discard them"
            )
    outs_before = _cached_outs(root)
    _restore_files(root, sha, baseline)
    try:
        _dvc_checkout(root, force)
    except VersionError as err:
        _restore_files(root, baseline, sha)
        try:
            _dvc_checkout(root, force)
        except VersionError as again:
            raise VersionError(f"{err}. Restoring the previous state failed too: {again}") from err
        raise VersionError(f"{err}. Nothing was changed: the workspace was put back as it was") from err
    outs_after = _cached_outs(root)
    for path in sorted(outs_before - outs_after):
        if not any(_overlaps(path, other) for other in outs_after):
            _remove_output(root / path)
    state = _state_path(root)
    if sha == head:
        state.unlink(missing_ok=True)
    else:
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"head": head, "restored": sha}) + "\n")
    run_logger(log).info("restored data and models of %s (%s)", f"v{number}" if number else ref, sha[:8])
    return Version(number, sha, subject)


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _remove_output(path: Path) -> None:
    """Remove an output the restored version does not have (its bytes stay in the DVC cache)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
