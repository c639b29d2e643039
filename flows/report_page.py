"""`faceops report`'s page: the run report gathered from a workspace's pipeline outputs, rendered offline.

It reads and never recomputes: every ``metrics/*.json``, the report stage's ``data/reports`` (summary and
contact sheets), the plots dvc.yaml's ``plots:`` define (``dvc plots show --json``, drawn to SVG by
vl-convert, so no CDN), the metrics at the last faceops version commit (the change column, as ``dvc metrics
diff <commit>`` gives it) and the stage run times ``faceops run`` records. The page goes to
``reports/index.html``, outside DVC's outputs: like ``dvc plots show``'s HTML it is a view, and run times and
"the last version" are facts about the workspace's history, not inputs that would reproduce its bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from faceops.config.params import Params
from faceops.io.atomic import atomic_write_text
from faceops.io.layout import SUMMARY_JSON
from faceops.report.headline import Value, headline_rows
from faceops.report.page import Figure, ReportPage, StageTime, render_page
from flows.gitrepo import VersionError, head_commit, read_blobs, repo_prefix, tree_files
from flows.history import version_log
from flows.workspace import STATE_DIR

__all__ = ["PAGE", "PLOT_PATTERNS", "record_run_times", "dvc_plot_specs", "build_report", "write_report"]

REPORTS = Path("data") / "reports"
METRICS = Path("metrics")
PAGE = Path("reports") / "index.html"
RUN_TIMES = Path(STATE_DIR) / "run_times.json"
#: The plots the page (and `faceops plots` by default) shows: training loss, ROC, expression confusion.
PLOT_PATTERNS = ("loss/total", "ROC", "confusion")


def record_run_times(workspace: Path, runs: Iterable[Mapping]) -> None:
    """Remember how long each stage that ran took (``runs``: the pipeline flow's ``{stage, ran, seconds}``);
    stages that were up to date keep the time of their last run."""
    path = workspace / RUN_TIMES
    known = json.loads(path.read_text()) if path.is_file() else {}
    finished = time.strftime("%Y-%m-%d %H:%M:%S")
    known.update({r["stage"]: {"seconds": float(r["seconds"]), "finished": finished} for r in runs if r["ran"]})
    atomic_write_text(path, json.dumps(known, indent=1, sort_keys=True) + "\n")


def dvc_plot_specs(workspace: Path, patterns: Sequence[str]) -> list[tuple[str, dict]]:
    """``(name, vega-lite spec)`` of every dvc.yaml plot whose name contains one of ``patterns``.

    Raises:
        RuntimeError: ``dvc plots show`` failed (the message carries its error output).
    """
    with tempfile.TemporaryDirectory(prefix="faceops-dvc-plots-") as scratch:  # DVC copies image plots there
        shown = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json", "--out", scratch],
                               cwd=workspace, capture_output=True, text=True, check=False)  # fmt: skip
    if shown.returncode != 0:
        raise RuntimeError(f"dvc plots show failed: {shown.stderr.strip()[-2000:]}")
    return [
        (name, entry["content"])
        for name, entries in sorted(json.loads(shown.stdout).get("data", {}).items())
        if any(p in name for p in patterns)
        for entry in entries
        if isinstance(entry, dict) and entry.get("type") == "vega"
    ]


def _plots(workspace: Path) -> tuple[list[Figure], list[str]]:
    try:
        import vl_convert
    except ImportError:
        return [], ["Plots are not drawn: vl-convert-python is missing (pip install 'faceops[plots]')."]
    try:
        specs = dvc_plot_specs(workspace, PLOT_PATTERNS)
    except RuntimeError as err:
        return [], [str(err)]
    specs.sort(key=lambda named: (not named[0].endswith(".tsv"), named[0]))  # training curves first
    return [Figure(name.replace("/plots/metrics/", ": ").removesuffix(".tsv"), "image/svg+xml",
                   vl_convert.vegalite_to_svg(spec).encode()) for name, spec in specs], []  # fmt: skip


def _flat(files: Mapping[str, bytes | None]) -> dict[str, Value]:
    """``{path: JSON bytes}`` of metrics files -> ``{<file stem>/<key>: value}`` (nested keys joined by ``/``)."""

    def walk(prefix: str, data: object) -> Iterable[tuple[str, Value]]:
        if isinstance(data, dict):
            for key, value in data.items():
                yield from walk(f"{prefix}/{key}", value)
        else:
            yield prefix, data  # type: ignore[misc]

    return {k: v for path, blob in sorted(files.items()) if blob is not None
            for k, v in walk(Path(path).stem, json.loads(blob))}  # fmt: skip


def _previous_version(workspace: Path) -> tuple[str | None, dict[str, Value], list[str]]:
    """``(name, metrics, notes)`` of the newest faceops version commit (name None when there is none)."""
    try:
        versions = version_log(workspace) if head_commit(workspace) else []
        if not versions:
            return None, {}, []
        number, sha, date, _ = versions[0]
        prefix = repo_prefix(workspace)
        paths = [p for p in tree_files(workspace, sha) if Path(p).parent == METRICS and p.endswith(".json")]
        blobs = read_blobs(workspace, (f"{sha}:{prefix}{p}" for p in paths))
    except VersionError as err:
        return None, {}, [f"No comparison with an earlier version: {err}"]
    return f"v{number} ({sha[:8]}, {date[:10]})", _flat({p: blobs[f"{sha}:{prefix}{p}"] for p in paths}), []


def _run_times(workspace: Path) -> list[StageTime]:
    path = workspace / RUN_TIMES
    known = json.loads(path.read_text()) if path.is_file() else {}
    return [StageTime(stage, t["seconds"], t["finished"]) for stage, t in sorted(known.items())]


def build_report(workspace: Path, params: Params) -> ReportPage:
    """Gather the page from ``workspace`` (validated ``params``: sources and headline rules)."""
    metrics = _flat({str(p): p.read_bytes() for p in sorted((workspace / METRICS).glob("*.json"))})
    summary_file = workspace / REPORTS / SUMMARY_JSON
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    metrics.update({f"report/{k}": v for k, v in summary.get("metrics", {}).items()})
    notes = [] if summary else [f"{REPORTS / SUMMARY_JSON} is missing: run the report stage (faceops run)."]
    previous_name, previous, version_notes = _previous_version(workspace)
    plots, plot_notes = _plots(workspace)
    sheets = [Figure(p.stem.removeprefix("contact_"), "image/png", p.read_bytes())
              for p in sorted((workspace / REPORTS).glob("contact_*.png"))]  # fmt: skip
    sources = [s.name for s in params.ingest.sources]
    commit = head_commit(workspace)
    return ReportPage(
        title=f"faceops report: {workspace.name}",
        meta=f"{workspace} at commit {commit[:8] if commit else '(none)'}, rendered {time.strftime('%Y-%m-%d %H:%M')}",
        headline=headline_rows(metrics, params.report.headline, sources), metrics=metrics, previous=previous,
        previous_name=previous_name, plots=plots, contact_sheets=sheets,
        quarantine_counts=[tuple(q) for q in summary.get("quarantine", [])],
        quarantine=summary.get("quarantine_rows", []), quarantine_total=summary.get("quarantine_total", 0),
        run_times=_run_times(workspace), notes=[*notes, *version_notes, *plot_notes],
    )  # fmt: skip


def write_report(workspace: Path, params: Params) -> tuple[Path, ReportPage]:
    """Build the page and write it to ``reports/index.html`` atomically; return its path and content."""
    page = build_report(workspace, params)
    target = workspace / PAGE
    atomic_write_text(target, render_page(page))
    return target, page
