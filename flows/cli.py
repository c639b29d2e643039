"""The `faceops` command: what users type (run, status, ingest, report).

Prefect is imported only when a flow really runs: `faceops status` and an up-to-date `faceops run` cost
about a second (DVC's status), not a Prefect server start.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Optional, get_args

import typer
import yaml
from rich.console import Console
from rich.table import Table

from faceops.config.core import ParamsError
from faceops.config.ingest import SourceSpec
from faceops.config.params import load_params, parse_params
from flows import cli_versions
from flows.prefect_server import ServerError, given_api_url, start_server
from flows.sources import SourceError, dvc_add, register_source
from flows.workspace import (
    StageFailed,
    WorkspaceError,
    configure_environment,
    find_root,
    plan_run,
    recover,
    served_api_url,
    workspace_lock,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
RootOption = Annotated[Optional[Path], typer.Option("--root", help="workspace root (default: nearest dvc.yaml)")]
FORMATS: tuple[str, ...] = get_args(SourceSpec.model_fields["format"].annotation)  # the schema's list


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _workspace(root: Path | None) -> Path:
    try:
        workspace = find_root(root)
    except WorkspaceError as err:
        _fail(str(err))
    configure_environment(workspace)
    return workspace


def _validated_params(workspace: Path):
    try:
        return load_params(workspace / "params.yaml")
    except (ParamsError, FileNotFoundError) as err:
        _fail(str(err))


def _known_api(workspace: Path) -> str | None:
    """The Prefect API a run reports to without starting a server: PREFECT_API_URL, or this workspace's
    running `faceops serve` (the run then shows in its UI); None when neither answers."""
    given = given_api_url()
    if given:
        return given
    api_url = served_api_url(workspace)
    if api_url:
        console.print(f"using the Prefect server of faceops serve at {api_url} (the run shows in its UI)")
    return api_url


@app.command()
def run(
    stage: Annotated[Optional[list[str]], typer.Option("--stage", "-s", help="bring this stage (and upstream) up to date")] = None,
    force: Annotated[bool, typer.Option(help="re-run the selected stages even if up to date")] = False,
    root: RootOption = None,
) -> None:
    """Run the pipeline through Prefect; returns at once when DVC says everything is up to date."""
    workspace = _workspace(root)
    params = _validated_params(workspace)
    targets = stage or []
    server = None
    try:
        with workspace_lock(workspace, params.pipeline.lock_wait_seconds):
            for note in recover(workspace):
                console.print(note)
            settled, rebuild = None, None
            if not force:
                plan = plan_run(workspace, targets)
                if not plan.stale:
                    console.print("Everything is up to date: nothing to run.")
                    return
                console.print(f"Stale: {', '.join(sorted(plan.stale))}")
                settled, rebuild = sorted(plan.settled), sorted(plan.force)
            api_url = _known_api(workspace)
            if api_url is None:  # a tethered server of our own, starting while Prefect is imported here
                server = start_server(workspace, "run")
            from prefect.settings import PREFECT_API_URL, temporary_settings  # deferred: importing Prefect is slow

            from flows.pipeline import pipeline

            api_url = api_url or server.ready()
            start = time.monotonic()
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                runs = pipeline(str(workspace), targets, force, stream=sys.stderr.isatty(), settled=settled,
                                rebuild=rebuild)  # fmt: skip
    except (WorkspaceError, ServerError) as err:
        _fail(str(err))
    except StageFailed as err:
        _fail(str(err), code=1)
    finally:
        if server is not None:
            server.stop()
    from flows.report_page import record_run_times

    record_run_times(workspace, runs)
    table = Table("stage", "ran", "seconds")
    for r in runs:
        table.add_row(r["stage"], "yes" if r["ran"] else "up to date", f"{r['seconds']:.1f}")
    console.print(table)
    console.print(f"pipeline finished in {time.monotonic() - start:.1f} s; `faceops report` for the report page")


@app.command()
def status(root: RootOption = None) -> None:
    """Say which stages are stale and why (DVC's view), without running anything."""
    workspace = _workspace(root)
    _validated_params(workspace)
    plan = plan_run(workspace)
    table = Table("stage", "state", "why")
    for name in plan.order:
        reasons = plan.stale.get(name)
        why = "; ".join(_describe(r) for r in reasons) if reasons else ""
        table.add_row(name, "[yellow]stale[/yellow]" if reasons else "[green]up to date[/green]", why)
    console.print(table)
    if not plan.stale:
        console.print("Everything is up to date.")


@app.command()
def deps(
    write: Annotated[bool, typer.Option("--write", help="rewrite the code entries of dvc.yaml's deps")] = False,
    root: RootOption = None,
) -> None:
    """Check that every stage's dvc.yaml deps list all the code it can import (exit 1 naming the gaps).

    With --write, the code entries of every stage's deps are regenerated from its imports (data deps,
    params and outputs stay as written).
    """
    from flows.codedeps import missing_code_deps, write_code_deps

    workspace = _workspace(root)
    if write:
        changed = write_code_deps(workspace)
        console.print(f"dvc.yaml: code deps rewritten for {', '.join(changed)}" if changed else "dvc.yaml: up to date")
        return
    gaps = missing_code_deps(workspace)
    for stage, files in gaps.items():
        console.print(f"[red]{stage}[/red] imports files its deps do not list: {', '.join(files)}")
    if gaps:
        console.print("run `faceops deps --write` to regenerate the code deps of dvc.yaml")
        raise typer.Exit(1)
    console.print("every stage's deps cover the code it can import")


def _describe(reason: object) -> str:
    """DVC status entries are strings ("always changed") or {"changed deps": {path: what}} dicts."""
    if isinstance(reason, dict):
        parts = []
        for kind, detail in reason.items():
            items = ", ".join(f"{k} ({v})" for k, v in detail.items()) if isinstance(detail, dict) else str(detail)
            parts.append(f"{kind}: {items}")
        return "; ".join(parts)
    return str(reason)


def _register(workspace: Path, name: str, fmt: str, fill, *, replace: bool) -> Path:
    try:
        return register_source(workspace, name, fmt, fill, replace=replace)
    except SourceError as err:
        _fail(str(err))


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="folder with the photos (and labels.csv / annotations.json)")],
    name: Annotated[str, typer.Option("--name", "-n", help="source name: lowercase letters, digits, _")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"layout: {', '.join(FORMATS)}")] = "imagefolder",
    link: Annotated[bool, typer.Option(help="hard-link files instead of copying (same filesystem only)")] = False,
    replace: Annotated[bool, typer.Option(help="replace an existing source of that name")] = False,
    root: RootOption = None,
) -> None:
    """Copy (or link) a folder into data/raw/NAME, register it in params.yaml and track it with DVC."""
    workspace = _workspace(root)
    if fmt not in FORMATS:
        _fail(f"unknown format {fmt!r}; expected one of {list(FORMATS)}")
    if not path.is_dir():
        _fail(f"{path} is not a folder")
    copy = _hardlink_or_copy if link else shutil.copy2

    def fill(staging: Path) -> None:
        shutil.copytree(path, staging, copy_function=copy, symlinks=False, dirs_exist_ok=True)

    target = _register(workspace, name, fmt, fill, replace=replace)
    n_files = sum(1 for p in target.rglob("*") if p.is_file())
    console.print(f"added source {name!r} ({fmt}, {n_files} files) -> {target.relative_to(workspace)}; "
                  "now `faceops run` (git add the .dvc file and params.yaml to version it)")  # fmt: skip


@app.command("import-rec")
def import_rec(
    rec: Annotated[Path, typer.Argument(help="insightface train.rec (train.idx beside it)")],
    name: Annotated[str, typer.Option("--name", "-n", help="source name for data/raw/NAME")],
    replace: Annotated[bool, typer.Option(help="replace an existing source of that name")] = False,
    root: RootOption = None,
) -> None:
    """Import an insightface RecordIO set (already aligned faces) as a labels_csv source.

    The faces are aligned already, so each row gets the ArcFace template as its landmarks and the
    `align` stage reproduces them (an identity warp); no mxnet is needed.
    """
    from faceops.io.insightface_import import write_recordio_source

    workspace = _workspace(root)
    idx = rec.with_suffix(".idx")
    if not rec.is_file() or not idx.is_file():
        _fail(f"need both {rec} and {idx}")
    target = _register(workspace, name, "labels_csv", lambda d: write_recordio_source(rec, idx, d), replace=replace)
    console.print(f"imported {rec} as source {name!r} -> {target.relative_to(workspace)}; now `faceops run`")


@app.command("import-bin")
def import_bin(
    path: Annotated[Path, typer.Argument(help="an insightface verification set (lfw.bin, cfp_fp.bin, ...)")],
    name: Annotated[str, typer.Option("--name", "-n", help="set name (evaluate.bin_sets)")],
    root: RootOption = None,
) -> None:
    """Check a .bin verification set with the restricted loader, copy it to data/verification/ and evaluate on it."""
    from faceops.io.verification_bin import load_verification_bin

    workspace = _workspace(root)
    try:
        images, same = load_verification_bin(path)
    except (ValueError, OSError) as err:
        _fail(f"{path} was refused: {err}")
    params_path = workspace / "params.yaml"
    raw = yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}
    sets = [s for s in raw.setdefault("evaluate", {}).get("bin_sets", []) if s != name]
    raw["evaluate"]["bin_sets"] = sets + [name]
    try:
        parse_params(raw, origin=str(params_path))
    except ParamsError as err:
        _fail(str(err))
    target = workspace / "data" / "verification" / f"{name}.bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, target)
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    dvc_add(workspace, target)
    console.print(f"{name}: {len(same)} pairs ({len(images)} images) -> {target.relative_to(workspace)}")


@app.command("import-weights")
def import_weights(
    name: Annotated[str, typer.Argument(help="the importer (faceops.models.importers.IMPORTERS: swinface, fiwhn)")],
    checkpoint: Annotated[Path, typer.Argument(help="the official checkpoint file")],
    root: RootOption = None,
) -> None:
    """Load an official checkpoint strictly into our model and save it as models/imported/<model>.pt (DVC-tracked).

    The file is read with torch.load(weights_only=True); a key or shape that does not fit is refused, naming it.
    """
    from faceops.io.checkpoint import save_checkpoint
    from faceops.io.digest import sha256_file
    from faceops.models.importers import import_weights as convert

    workspace = _workspace(root)
    try:
        record = convert(name, checkpoint)
    except (ValueError, FileNotFoundError) as err:
        _fail(f"{checkpoint} was refused: {err}")
    target = workspace / "models" / "imported" / f"{record['model_name']}.pt"
    save_checkpoint(target, record, kind="model")
    dvc_add(workspace, target)
    digest = sha256_file(target)[:12]
    console.print(f"{name}: {len(record['state_dict'])} tensors -> {target.relative_to(workspace)} "
                  f"({record['model_name']}, sha256 {digest}...); git add its .dvc file to version it")  # fmt: skip
    if record["model_name"].startswith("swinface_swin_t"):  # a recognition model `train` can start from
        console.print(f"to train from it, set in params.yaml: train.model: swinface_swin_t, "
                      f"train.init: imported:{record['model_name']}@{digest}")  # fmt: skip


def _hardlink_or_copy(src: str, dst: str) -> None:
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


@app.command()
def report(root: RootOption = None) -> None:
    """Print the headline table and write the run report page (reports/index.html, self-contained HTML).

    The page: headline per source, changes since the last faceops version, training curves, ROC and
    confusion (drawn offline), contact sheets, quarantine with reasons, stage run times, all metrics.
    """
    from faceops.report.headline import format_change, format_value
    from flows.report_page import write_report

    workspace = _workspace(root)
    params = _validated_params(workspace)
    path, page = write_report(workspace, params)
    compare = page.previous_name is not None
    table = Table("source", "metric", "value", "baseline", *([f"since {page.previous_name}"] if compare else []))
    for row in page.headline:
        change = [format_change(row.value, page.previous.get(row.key), row.digits)] if compare else []
        table.add_row(row.group or "all", row.label + (" (in use)" if row.chosen else ""),
                      format_value(row.value, row.digits), format_value(row.baseline, row.digits), *change)  # fmt: skip
    console.print(table)
    for note in page.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"report page: {path}")
    _print_monitor_history(workspace)


def _print_monitor_history(workspace: Path) -> None:
    """The `monitor` stage's verdicts per source at every faceops version (flows.monitoring.history_rows)."""
    from faceops.ood.history import HISTORY_COLUMNS
    from flows.monitoring import history_rows

    rows = history_rows(workspace)
    if rows:
        table = Table(*HISTORY_COLUMNS, title="new-data monitor: Gscore and estimated OOD share of the new photos")
        for row in rows:
            table.add_row(*("" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
                            for v in (row[c] for c in HISTORY_COLUMNS)))  # fmt: skip
        console.print(table)


@app.command()
def plots(
    match: Annotated[Optional[list[str]], typer.Option("--match", "-m", help="render plots whose name contains this")] = None,
    out: Annotated[Path, typer.Option(help="folder for the PNGs (relative to the workspace)")] = Path("plots/rendered"),
    root: RootOption = None,
) -> None:
    """Render DVC plots (training curves, ROC, confusion) to PNG offline.

    `dvc plots show` writes HTML that loads vega from a CDN; this asks DVC for the vega-lite specs
    (`dvc plots show --json`) and renders them locally with vl-convert.
    """
    import re

    from flows.report_page import PLOT_PATTERNS, dvc_plot_specs

    try:
        import vl_convert
    except ImportError:
        _fail("rendering needs vl-convert-python: pip install 'faceops[plots]'")
    workspace = _workspace(root)
    patterns = match or list(PLOT_PATTERNS)
    try:
        specs = dvc_plot_specs(workspace, patterns)
    except RuntimeError as err:
        _fail(str(err))
    target = workspace / out
    target.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, spec in specs:
        png = target / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".png")
        png.write_bytes(vl_convert.vegalite_to_png(spec))
        console.print(f"{name} -> {png.relative_to(workspace)}")
        written += 1
    if not written:
        _fail(f"no plot matched {patterns}: run `faceops run` first, or pass --match")


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="port of the local Prefect server (UI and API) on 127.0.0.1")] = 4200,
    ui: Annotated[bool, typer.Option(help="serve the Prefect UI from the local server")] = True,
    root: RootOption = None,
) -> None:
    """Serve the pipeline, new-data and retrain deployments and watch the inbox (Ctrl-C stops all).

    Starts a local Prefect server on 127.0.0.1 (SQLite under .faceops/prefect) unless PREFECT_API_URL
    names a running one.
    """
    from flows.serve import ServeError, serve_workspace

    workspace = _workspace(root)
    params = _validated_params(workspace)
    try:
        serve_workspace(workspace, params, port=port, ui=ui, echo=console.print)
    except ServeError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        console.print("faceops serve stopped")


cli_versions.register(app)

if __name__ == "__main__":
    app()
