"""The history of faceops versions: version commits found by their trailer, their metrics and tags.

A faceops version is a commit whose message ends with a ``Faceops-Version: N`` trailer
(:mod:`flows.versioning` makes them). This module reads them back: :func:`list_versions` for
``faceops history``, :func:`resolve_version` for ``faceops checkout`` (a number, a tag or a sha) and
:func:`read_metrics` for the evaluation metrics a commit pins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flows.gitrepo import VersionError, head_commit, read_blobs, repo_prefix, run_git, tags_by_commit

__all__ = [
    "METRICS_FILE",
    "TRAILER",
    "Version",
    "VersionInfo",
    "list_versions",
    "numeric_metrics",
    "read_metrics",
    "resolve_version",
    "version_log",
]

TRAILER = "Faceops-Version"
METRICS_FILE = "metrics/evaluate.json"

#: ``(number, sha, date, subject)`` of one version commit.
LogRow = tuple[int, str, str, str]


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


def numeric_metrics(data: object, prefix: str = "") -> dict[str, float]:
    """Flatten nested JSON metrics to ``{a/b: value}``, numbers only (booleans are not metrics)."""
    if isinstance(data, Mapping):
        flat: dict[str, float] = {}
        for key, value in data.items():
            flat.update(numeric_metrics(value, f"{prefix}{key}/"))
        return flat
    if isinstance(data, int | float) and not isinstance(data, bool):
        return {prefix.rstrip("/"): float(data)}
    return {}


def read_metrics(root: Path, revs: Iterable[str], path: str = METRICS_FILE) -> dict[str, dict[str, float] | None]:
    """Metrics of ``path`` (default :data:`METRICS_FILE`) at each commit: ``{rev: {key: value}}``, None where absent."""
    prefix = repo_prefix(root)
    revs = list(revs)
    blobs = read_blobs(root, (f"{rev}:{prefix}{path}" for rev in revs))
    result: dict[str, dict[str, float] | None] = {}
    for rev in revs:
        blob = blobs[f"{rev}:{prefix}{path}"]
        result[rev] = None if blob is None else numeric_metrics(json.loads(blob))
    return result


def version_log(root: Path, rev: str = "HEAD") -> list[LogRow]:
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


def list_versions(workspace: Path) -> list[VersionInfo]:
    """The faceops versions reachable from HEAD, newest first, with their metrics and tags."""
    root = Path(workspace).resolve()
    rows = version_log(root)
    metrics = read_metrics(root, (sha for _, sha, _, _ in rows))
    tags = tags_by_commit(root)
    return [
        VersionInfo(number, sha, date, subject, metrics[sha] or {}, tuple(sorted(tags.get(sha, []))))
        for number, sha, date, subject in rows
    ]


def resolve_version(root: Path, ref: str) -> tuple[int, str, str]:
    """``(number, sha, subject)`` for a version number ("7", "v7"), a tag or a sha.

    Raises:
        VersionError: ``ref`` is none of these; the message lists the known versions.
    """
    rows = version_log(root)
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


def _known(rows: list[LogRow]) -> str:
    return ", ".join(f"v{n}" for n, *_ in reversed(rows)) or "none yet (no faceops version commits)"
