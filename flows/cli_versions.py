"""`faceops history`, `faceops checkout`, `faceops promote`: the version commands, added to the CLI by ``register``.

No Prefect import here: listing versions is a few git calls and must stay instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Column, Table

from faceops.config.core import ParamsError
from faceops.config.params import load_params
from flows.checkout import checkout_version
from flows.gitrepo import VersionError
from flows.history import list_versions
from flows.promotion import MODEL_TAG, PromotionError, promote_if_better
from flows.workspace import WorkspaceError, configure_environment, find_root, workspace_lock

console = Console()
RootOption = Annotated[Optional[Path], typer.Option("--root", help="workspace root (default: nearest dvc.yaml)")]
#: Metric-name endings shown after the promotion metric when they exist (history's default columns).
HEADLINE_SUFFIXES = ("verif/acc", "verif/auc", "expr/acc", "age/mae")
MAX_METRIC_COLUMNS = 5


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _workspace_and_params(root: Path | None):
    try:
        workspace = find_root(root)
    except WorkspaceError as err:
        _fail(str(err))
    configure_environment(workspace)
    try:
        return workspace, load_params(workspace / "params.yaml")
    except (ParamsError, FileNotFoundError) as err:
        _fail(str(err))


def _columns(first: str, extra: list[str], available: set[str]) -> list[str]:
    """The promotion metric, then the asked-for metrics, else the headline ones present."""
    chosen = extra or sorted(k for k in available if k.endswith(HEADLINE_SUFFIXES))[: MAX_METRIC_COLUMNS - 1]
    return list(dict.fromkeys([first, *chosen]))


def history(
    metric: Annotated[Optional[list[str]], typer.Option("--metric", "-m", help="metric column to show")] = None,
    limit: Annotated[int, typer.Option(help="show at most this many versions (newest first)")] = 20,
    root: RootOption = None,
) -> None:
    """List the versions (git commits made by faceops) with their promotion tags and key metrics."""
    workspace, params = _workspace_and_params(root)
    try:
        versions = list_versions(workspace)[:limit]
    except VersionError as err:
        _fail(str(err))
    if not versions:
        console.print("No versions yet: a pipeline run that changes data or models records one.")
        return
    key = params.ops.promotion.metric
    columns = _columns(key, metric or [], {k for v in versions for k in v.metrics})
    shared = _shared_prefix(columns)
    table = Table("version", Column("date", no_wrap=True), "sha", "promoted",
                  *(Column(c[len(shared):], overflow="fold") for c in columns),
                  caption=f"metrics under {shared!r}" if shared else None)  # fmt: skip
    for v in versions:
        promoted = ", ".join(t for t in v.tags if MODEL_TAG.fullmatch(t))
        values = [f"{v.metrics[c]:.4g}" if c in v.metrics else "" for c in columns]
        table.add_row(f"v{v.number}", v.date[:16].replace("T", " "), v.sha[:8], promoted, *values)
    console.print(table)
    console.print(f"promotion: {key} ({params.ops.promotion.mode}, margin {params.ops.promotion.margin:g})")


def _shared_prefix(keys: list[str]) -> str:
    """Leading ``a/b/`` components all metric names share (printed once in the caption, not in each header)."""
    parts = [k.split("/")[:-1] for k in keys]
    shared = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        shared.append(level[0])
    return "".join(f"{p}/" for p in shared)


def checkout(
    version: Annotated[str, typer.Argument(help="version number (7 or v7), tag (model@v2) or commit sha")],
    force: Annotated[bool, typer.Option(help="discard uncommitted changes to pipeline files and outputs")] = False,
    root: RootOption = None,
) -> None:
    """Restore the data and models of a version (HEAD and code stay; `git status` shows the difference)."""
    workspace, params = _workspace_and_params(root)
    try:
        with workspace_lock(workspace, params.pipeline.lock_wait_seconds):
            restored = checkout_version(workspace, version, force=force)
    except (VersionError, WorkspaceError) as err:
        _fail(str(err))
    name = f"v{restored.number}" if restored.number else version
    console.print(f"restored data and models of {name} ({restored.sha[:8]}): {restored.subject}")
    console.print("HEAD did not move; `faceops checkout` of the latest version returns, and the next recorded "
                  "version keeps this state (a rollback).")  # fmt: skip


def promote(root: RootOption = None) -> None:
    """Tag HEAD's model `model@vN` if its evaluation beats the promoted model's (params: ops.promotion)."""
    workspace, params = _workspace_and_params(root)
    try:
        decision = promote_if_better(workspace, params.ops.promotion)
    except (PromotionError, VersionError) as err:
        _fail(str(err))
    colour = "green" if decision.promote else "yellow"
    console.print(f"[{colour}]{'promoted as ' + str(decision.new_tag) if decision.promote else 'not promoted'}"
                  f"[/{colour}]: {decision.reason}")  # fmt: skip
    table = Table("", "candidate (HEAD)", decision.promoted_tag or "promoted")
    old = "" if decision.promoted_value is None else f"{decision.promoted_value:.6g}"
    table.add_row(decision.metric, f"{decision.candidate_value:.6g}", old)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``history``, ``checkout`` and ``promote`` to the ``faceops`` app."""
    app.command()(history)
    app.command()(checkout)
    app.command()(promote)
