"""What operations do with the `monitor` stage's verdict: judge against the promoted model, publish, retrain, history.

The new-data flow (flows/operations.py) points ``monitor.model`` at the newest promotion tag before the
pipeline runs (:func:`monitor_from_promoted`), publishes the verdict of every inbox batch as a Prefect
artifact (:func:`publish_monitor`: the table per source and each source's sheet of most-OOD photos) and
starts the retrain flow when the verdict and ``ops.monitor.action`` say so (:func:`should_retrain`).
``faceops report`` prints :func:`history_rows`: the monitor's metrics at every faceops version.

The stage's output paths are those of its dvc.yaml command (``MONITOR_OUT``, ``MONITOR_METRICS``; a test
checks they agree). Prefect is imported only inside a run, so the CLI stays quick.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from faceops.io.layout import SUMMARY_JSON
from faceops.ood.history import monitor_history
from flows.history import numeric_metrics, read_metrics, version_log
from flows.promotion import param_from_promoted
from flows.runlog import in_prefect_run, run_logger

__all__ = ["ARTIFACT_KEY", "MONITOR_METRICS", "MONITOR_OUT", "history_rows", "monitor_from_promoted",
           "monitor_markdown", "publish_monitor", "read_summary", "should_retrain"]  # fmt: skip

log = logging.getLogger("faceops.monitoring")

MONITOR_OUT = "data/monitor"
MONITOR_METRICS = "metrics/monitor.json"
ARTIFACT_KEY = "faceops-monitor"
#: Widest contact sheet embedded in an artifact (pixels); larger sheets are shrunk to keep artifacts small.
ARTIFACT_SHEET_WIDTH = 640


def monitor_from_promoted(workspace: Path) -> str | None:
    """Point ``monitor.model`` at the newest ``model@vN`` tag (None when nothing is promoted; params unchanged)."""
    return param_from_promoted(workspace, "monitor", "model")


def read_summary(workspace: Path) -> dict | None:
    """The monitor stage's summary.json, or None before its first run."""
    path = Path(workspace) / MONITOR_OUT / SUMMARY_JSON
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def should_retrain(summary: Mapping | None, action: str) -> bool:
    """Start the retrain flow? Only when ``ops.monitor.action`` is ``retrain`` and the monitor recommends it."""
    return action == "retrain" and summary is not None and summary.get("recommendation") == "retrain"


def _fmt(value: object, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _embedded(png: bytes) -> str:
    """A data URI of the sheet, shrunk to :data:`ARTIFACT_SHEET_WIDTH` and re-encoded as JPEG."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if image.shape[1] > ARTIFACT_SHEET_WIDTH:
        height = round(image.shape[0] * ARTIFACT_SHEET_WIDTH / image.shape[1])
        image = cv2.resize(image, (ARTIFACT_SHEET_WIDTH, height), interpolation=cv2.INTER_AREA)
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def monitor_markdown(summary: Mapping, sheets: Mapping[str, bytes]) -> str:
    """The verdict as markdown: one table row per source, then each source's most-OOD photos (``sheets``: PNGs)."""
    against = summary.get("model", "trained")
    model = "the trained model" if against == "trained" else against
    references = ", ".join(summary.get("reference_sources", [])) or "none"
    lines = [f"# New data: {summary.get('recommendation', 'ok')}", "",
             f"Judged against {model} ({summary.get('model_name')}, step {summary.get('step')}); reference sources: "
             f"{references}.", "", "| source | new photos | Gscore | est. OOD share | recommendation | why |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for source, entry in sorted(summary.get("sources", {}).items()):
        cells = (str(entry["incoming"]), _fmt(entry.get("gscore")), _fmt(entry.get("ood_share"), 2))
        lines.append(f"| {source} | {' | '.join(cells)} | **{entry['recommendation']}** | {entry['reason']} |")
    for source, png in sorted(sheets.items()):
        lines += ["", f"## Most out-of-distribution new photos of `{source}`", "", f"![{source}]({_embedded(png)})"]
    return "\n".join(lines) + "\n"


def publish_monitor(workspace: Path) -> dict | None:
    """Log the monitor's verdict and, inside a Prefect run, publish it as the ``faceops-monitor`` artifact.

    Returns:
        The summary, or None when the monitor stage has not run (nothing is published then).
    """
    summary = read_summary(workspace)
    logger = run_logger(log)
    if summary is None:
        logger.info("no monitor summary in %s: the monitor stage has not run", MONITOR_OUT)
        return None
    folder = Path(workspace) / MONITOR_OUT
    sheets = {source: (folder / entry["sheet"]).read_bytes() for source, entry in summary.get("sources", {}).items()
              if (folder / entry["sheet"]).is_file()}  # fmt: skip
    for source, entry in sorted(summary.get("sources", {}).items()):
        logger.info("monitor %s: %s new photos, %s: %s", source, entry["incoming"], entry["recommendation"],
                    entry["reason"])  # fmt: skip
    if in_prefect_run():
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(key=ARTIFACT_KEY, markdown=monitor_markdown(summary, sheets),
                                 description=f"new data: {summary.get('recommendation')}")  # fmt: skip
    return summary


def history_rows(workspace: Path) -> list[dict[str, object]]:
    """The monitor's verdicts per source at every faceops version (newest first), led by the working tree's
    when it differs from the newest version's (a run not recorded as a version yet)."""
    root = Path(workspace).resolve()
    versions = version_log(root)
    at_version = read_metrics(root, [sha for _, sha, _, _ in versions], MONITOR_METRICS)
    rows = [(f"v{number}", at_version[sha]) for number, sha, _, _ in versions if at_version[sha]]
    current = root / MONITOR_METRICS
    if current.is_file():
        metrics = numeric_metrics(json.loads(current.read_text(encoding="utf-8")))
        if not rows or metrics != rows[0][1]:
            rows.insert(0, ("working tree", metrics))
    return monitor_history(rows)
