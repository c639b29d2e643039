"""The run report page (flows.report_page + `faceops report`) on a small git + DVC workspace, in a real browser.

The workspace holds what a run leaves (metrics files, the report stage's summary and a contact sheet,
dvc.yaml plots with their data, recorded run times) and one earlier faceops version commit with other
metrics, so every section of the page has content; headless Chromium then checks that every table and image
renders and that the console stays clean.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceops.config.params import load_params
from faceops.report import contact_sheet, report_summary
from flows.report_page import PAGE, record_run_times, write_report
from headless import browser, render  # noqa: F401  (browser: the session's headless Chromium fixture)

REPO = Path(__file__).resolve().parents[1]
DVC_YAML = """stages: {}
plots:
  - models/swinface_live/plots/metrics:
      x: step
  - ROC:
      template: simple
      x: fpr
      y:
        plots/evaluate/sample_roc.json: tpr
  - Expression confusion:
      template: confusion
      x: predicted
      y:
        plots/evaluate/sample_confusion.json: actual
"""


def _metrics(acc: float) -> dict[str, dict]:
    evaluate = {"sample/verif/acc": acc, "sample/verif/auc": 0.9, "sample/verif/tar@far=1e-2": 0.31,
                "sample/expr/acc": 0.41, "sample/expr/majority_acc": 0.3, "sample/attr/mean_acc": 0.77,
                "sample/attr/mean_majority_acc": 0.79, "sample/attr/n_above_majority": 12, "sample/age/mae": 7.25,
                "sample/age/median_mae": 9.5, "sample/group/g0/acc": 0.8, "sample/group/g1/acc": 0.7,
                "sample/group/std": 0.05, "sample/group/ser": 1.5}  # fmt: skip
    cluster = {"method": "hdbscan", "gcn/bcubed/f": 0.41, "hdbscan/bcubed/f": 0.63, "gcn/pairwise/f": 0.34,
               "hdbscan/pairwise/f": 0.44}  # fmt: skip
    return {"ingest": {"sample/seen": 44, "sample/accepted": 41, "env/numpy": "2.3"}, "evaluate": evaluate,
            "cluster": cluster, "keypoints": {"heldout/nme": 0.081, "supervised/heldout/nme": 0.085}}  # fmt: skip


def _write_metrics(root: Path, acc: float) -> None:
    for stem, values in _metrics(acc).items():
        (root / "metrics" / f"{stem}.json").write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def _git(root: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ws")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    (root / "dvc.yaml").write_text(DVC_YAML)
    for folder in ("metrics", "plots/evaluate", "models/swinface_live/plots/metrics/loss", "data/reports"):
        (root / folder).mkdir(parents=True)
    losses = "step\ttotal\n" + "".join(f"{s}\t{10 / s:.4f}\n" for s in range(1, 21))
    (root / "models/swinface_live/plots/metrics/loss/total.tsv").write_text(losses)
    roc = [{"fpr": f, "tpr": min(1.0, f ** 0.3), "threshold": 1 - f} for f in np.linspace(0, 1, 11).tolist()]
    (root / "plots/evaluate/sample_roc.json").write_text(json.dumps(roc))
    confusion = [{"actual": a, "predicted": p} for a in range(7) for p in range(7) for _ in range(5 if a == p else 1)]
    (root / "plots/evaluate/sample_confusion.json").write_text(json.dumps(confusion))
    faces = [np.full((112, 112, 3), 30 * i, np.uint8) for i in range(6)]
    png = cv2.imencode(".png", contact_sheet(faces, columns=3))[1].tobytes()
    (root / "data/reports/contact_sample_test.png").write_bytes(png)
    quarantine = [{"source": "sample", "path": f"x/{i}.jpg", "stage": "ingest" if i < 2 else "align",
                   "reason": "truncated" if i < 2 else "no_face", "detail": "<b>not html</b>"} for i in range(3)]
    splits = {"test": {"samples": 41, "identities": 10, "shards": ["test-000000.tar"]}}
    summary = report_summary({"sample": splits}, quarantine, max_rows=2)
    (root / "data/reports/summary.json").write_text(json.dumps(summary))
    _write_metrics(root, acc=0.70)
    _git(root, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "faceops v1: first run\n\nFaceops-Version: 1")
    _write_metrics(root, acc=0.75)  # this run's metrics: the page compares them with v1
    record_run_times(root, [{"stage": "train", "ran": True, "seconds": 61.5},
                            {"stage": "report", "ran": False, "seconds": 0.0}])  # fmt: skip
    return root


def test_headline_compares_with_the_last_version_and_marks_the_chosen_method(workspace):
    path, page = write_report(workspace, load_params(workspace / "params.yaml"))
    assert path == workspace / PAGE and path.is_file()
    rows = {(r.group, r.label): r for r in page.headline}
    acc = rows[("sample", "verification accuracy")]
    assert (acc.value, page.previous[acc.key]) == (0.75, 0.70) and page.previous_name.startswith("v1 (")
    assert rows[("sample", "expression accuracy (vs. majority class)")].baseline == 0.3
    assert rows[("sample", "quarantined (ingest + align)")].value == 3
    assert [r.label for r in page.headline if r.chosen] == ["clustering B-cubed F: hdbscan",
                                                            "clustering pairwise F: hdbscan"]  # fmt: skip
    assert ("sample", "TAR at FAR 1e-2") in rows and ("sample", "accuracy of group g1") in rows
    assert [t.stage for t in page.run_times] == ["train"] and page.notes == []
    assert len(page.plots) == 3 and all(f.data.startswith(b"<svg") for f in page.plots)
    html = path.read_text()
    assert "&lt;b&gt;not html&lt;/b&gt;" in html and "<b>not html</b>" not in html  # details are escaped
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # nothing remote


def test_every_table_and_image_renders_in_a_headless_browser(workspace, browser, tmp_path):  # noqa: F811
    path, page = write_report(workspace, load_params(workspace / "params.yaml"))
    shown = render(browser, path, screenshot=tmp_path / "page.png")
    assert shown["console"] == []
    assert len(shown["images"]) == len(page.plots) + len(page.contact_sheets) == 4
    for src, loaded, natural, width in shown["images"]:
        assert loaded and natural > 0 and width > 0, src
    assert shown["tables"][0][0] == "headline" and shown["tables"][0][1] == len(page.headline) + 2  # + 2 groups
    for table_id, rows, height in shown["tables"]:
        assert rows > 0 and height > 0, table_id
    assert "verification accuracy" in shown["text"] and "+0.050" in shown["text"]
    assert (tmp_path / "page.png").read_bytes()[:4] == b"\x89PNG"


def test_faceops_report_prints_the_headline_and_the_page(workspace):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    result = subprocess.run([sys.executable, "-m", "flows.cli", "report"], cwd=workspace, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verification accuracy" in result.stdout and "+0.050" in result.stdout
    assert f"report page: {workspace / PAGE}" in result.stdout.replace("\n", "")


def test_run_times_keep_each_stages_last_run(tmp_path):
    record_run_times(tmp_path, [{"stage": "a", "ran": True, "seconds": 5.0}])
    record_run_times(tmp_path, [{"stage": "a", "ran": False, "seconds": 0.0}, {"stage": "b", "ran": True, "seconds": 3}])
    record_run_times(tmp_path, [{"stage": "b", "ran": True, "seconds": 4.5}])
    times = json.loads((tmp_path / ".faceops" / "run_times.json").read_text())
    assert {stage: t["seconds"] for stage, t in times.items()} == {"a": 5.0, "b": 4.5}
