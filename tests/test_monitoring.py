"""The operations side of monitoring: the new-data flow's artifact and retrain decision, the history per version,
judging against the promoted model; paths agree with dvc.yaml. The flow runs with ``.fn`` and test doubles for
the pipeline and the inbox, the way the other operations tests avoid a Prefect server."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import flows.monitoring as monitoring
import flows.operations as operations
from flows import runlog
from flows.inbox import FileSig
from flows.monitoring import (
    ARTIFACT_KEY,
    MONITOR_METRICS,
    MONITOR_OUT,
    history_rows,
    monitor_from_promoted,
    monitor_markdown,
    publish_monitor,
    should_retrain,
)  # fmt: skip
from flows.sources import AddResult

REPO = Path(__file__).resolve().parents[1]
IDENTITY = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}  # fmt: skip


def _summary(recommendation: str) -> dict:
    entry = {"incoming": 40, "gscore": 0.61, "ood_share": 0.58, "recommendation": recommendation, "sheet": "ood_cam.png",
             "reason": "Gscore 0.610 and estimated OOD share 0.58 reach ...", "most_ood": ["cam_a"]}  # fmt: skip
    return {"model": "model@v2", "model_name": "swinface_cpu", "step": 160, "reference_sources": ["sample"],
            "recommendation": recommendation, "sources": {"cam": entry}}  # fmt: skip


def _write_summary(workspace: Path, recommendation: str, sheet_width: int = 900) -> None:
    folder = workspace / MONITOR_OUT
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(_summary(recommendation)))
    (folder / "ood_cam.png").write_bytes(
        cv2.imencode(".png", np.full((300, sheet_width, 3), 200, np.uint8))[1].tobytes()
    )


def test_paths_are_the_monitor_stages_outputs_in_dvc_yaml():
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["monitor"]
    assert f"--out {MONITOR_OUT}" in stage["cmd"] and f"--metrics {MONITOR_METRICS}" in stage["cmd"]
    assert MONITOR_OUT in stage["outs"] and {MONITOR_METRICS: {"cache": False}} in stage["metrics"]


@pytest.mark.parametrize(("recommendation", "action", "expected"), [
    ("retrain", "retrain", True), ("retrain", "report", False), ("ok", "retrain", False), (None, "retrain", False)])  # fmt: skip
def test_only_a_retrain_verdict_under_action_retrain_starts_retraining(recommendation, action, expected):
    summary = None if recommendation is None else _summary(recommendation)
    assert should_retrain(summary, action) is expected


def test_markdown_has_the_table_and_a_shrunk_sheet(tmp_path):
    _write_summary(tmp_path, "retrain")
    text = monitor_markdown(_summary("retrain"), {"cam": (tmp_path / MONITOR_OUT / "ood_cam.png").read_bytes()})
    assert "# New data: retrain" in text and "against model@v2 (swinface_cpu, step 160)" in text
    assert "| cam | 40 | 0.610 | 0.58 | **retrain** |" in text
    uri = text.split("](data:image/jpeg;base64,")[1].split(")")[0]
    image = cv2.imdecode(np.frombuffer(base64.b64decode(uri), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1] == monitoring.ARTIFACT_SHEET_WIDTH and image.shape[0] == 213


def test_publish_makes_the_artifact_inside_a_run_and_nothing_before_the_first_monitor_run(tmp_path, monkeypatch):
    import prefect.artifacts

    artifacts = []
    monkeypatch.setattr(monitoring, "in_prefect_run", lambda: True)
    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", lambda **kw: artifacts.append(kw))
    assert publish_monitor(tmp_path) is None and artifacts == []
    _write_summary(tmp_path, "ok")
    assert publish_monitor(tmp_path)["recommendation"] == "ok"
    assert artifacts[0]["key"] == ARTIFACT_KEY and "| cam | 40 |" in artifacts[0]["markdown"]


@pytest.fixture
def flow_workspace(tmp_path, monkeypatch):
    """A workspace folder with the repo's params and test doubles for everything the flow runs."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    calls = {"artifacts": [], "retrain": [], "order": []}
    logger = logging.getLogger("test-new-data")
    monkeypatch.setattr(operations, "get_run_logger", lambda: logger)
    monkeypatch.setattr(operations, "_queued_lock", lambda ws, params: nullcontext())
    monkeypatch.setattr(operations, "settled_files", lambda snap, settle, now: {"a.jpg": FileSig(1, 1)})
    monkeypatch.setattr(
        operations, "add_files_to_source", lambda ws, src, folder, files: AddResult(src, True, ["a.jpg"])
    )
    monkeypatch.setattr(operations, "create_markdown_artifact", lambda **kw: calls["artifacts"].append(kw["key"]))
    monkeypatch.setattr(operations, "monitor_from_promoted", lambda ws: calls["order"].append("promoted") or "model@v2")
    monkeypatch.setattr(operations, "_version_and_promote", lambda ws, params, reason: {"version": 3, "promoted": None})
    monkeypatch.setattr(operations, "retrain", lambda root: calls["retrain"].append(root) or {"stages_run": ["train"]})
    monkeypatch.setattr(monitoring, "in_prefect_run", lambda: True)
    monkeypatch.setattr(runlog, "in_prefect_run", lambda: False)
    import prefect.artifacts

    monkeypatch.setattr(
        prefect.artifacts, "create_markdown_artifact", lambda **kw: calls["artifacts"].append(kw["key"])
    )
    return tmp_path, calls


def _set_action(workspace: Path, action: str) -> None:
    raw = yaml.safe_load((workspace / "params.yaml").read_text())
    raw["ops"]["monitor"] = {"action": action}
    (workspace / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.parametrize(("action", "recommendation", "retrains"), [
    ("retrain", "retrain", True), ("report", "retrain", False), ("retrain", "ok", False)])  # fmt: skip
def test_new_data_publishes_every_batch_and_retrains_only_when_asked(flow_workspace, monkeypatch, action,
                                                                     recommendation, retrains):  # fmt: skip
    workspace, calls = flow_workspace
    _set_action(workspace, action)

    def pipeline(ws, targets=None):
        calls["order"].append("pipeline")
        _write_summary(ws, recommendation)
        return [{"stage": "monitor", "ran": True}]

    monkeypatch.setattr(operations, "_run_stale", pipeline)
    summary = operations.new_data.fn(str(workspace), "cam")
    assert calls["order"] == ["promoted", "pipeline"]  # judged against the promoted model, then run
    assert calls["artifacts"] == ["faceops-new-data", ARTIFACT_KEY]
    assert summary["monitor"] == recommendation and summary["stages_run"] == ["monitor"]
    assert calls["retrain"] == ([str(workspace)] if retrains else [])
    assert ("retrain" in summary) is retrains


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env={**IDENTITY, "PATH": "/usr/bin:/bin"})


def test_history_lists_each_version_and_an_unrecorded_run_and_monitor_follows_the_promoted_tag(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    _git(tmp_path, "init", "-q")
    metrics = tmp_path / MONITOR_METRICS
    metrics.parent.mkdir()
    assert history_rows(tmp_path) == [] and monitor_from_promoted(tmp_path) is None  # no commits, no file
    for number, (gscore, retrain) in enumerate([(0.06, 0), (0.52, 1)], start=1):
        metrics.write_text(
            json.dumps({"cam/incoming": 40, "cam/gscore": gscore, "cam/retrain": retrain, "retrain": retrain})
        )
        _git(tmp_path, "add", ".")
        _git(tmp_path, "commit", "-q", "-m", f"version {number}\n\nFaceops-Version: {number}")
    _git(tmp_path, "tag", "-a", "-m", "promoted", "model@v1", "HEAD~1")
    assert [(r["version"], r["gscore"], r["retrain"]) for r in history_rows(tmp_path)] == [
        ("v2", 0.52, 1),
        ("v1", 0.06, 0),
    ]
    metrics.write_text(json.dumps({"cam/incoming": 7, "sample/incoming": 3, "retrain": 0}))
    rows = history_rows(tmp_path)
    assert [(r["version"], r["source"], r["incoming"]) for r in rows[:2]] == [("working tree", "cam", 7),
                                                                            ("working tree", "sample", 3)]  # fmt: skip
    assert rows[0]["gscore"] is None and len(rows) == 4
    assert monitor_from_promoted(tmp_path) == "model@v1"
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["monitor"]["model"] == "model@v1"
