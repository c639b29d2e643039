"""The `faceops` CLI on a temporary workspace: bad params fail first, ingest registers and tracks a source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _run(args, cwd, check=True):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    result = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def workspace(tmp_path):
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, tmp_path / name)
    for folder in ("stages", "src"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "data" / "verification").mkdir(parents=True)
    (tmp_path / "data" / "verification" / "README.md").write_text("verification sets\n")
    (tmp_path / "models" / "imported").mkdir(parents=True)
    (tmp_path / "models" / "imported" / "README.md").write_text("imported weights\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    _run(["dvc", "init", "-q"], tmp_path)
    _run(["dvc", "config", "core.analytics", "false"], tmp_path)
    return tmp_path


def test_bad_params_fail_before_any_stage_runs(workspace):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["align"]["workers"] = 0
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    result = _run(["flows.cli", "run"], workspace, check=False)
    assert result.returncode == 2
    assert "align.workers" in result.stdout
    assert not (workspace / "data" / "raw").exists()
    assert not (workspace / "dvc.lock").exists()


def test_ingest_registers_tracks_and_marks_stale(workspace, tmp_path_factory):
    photos = tmp_path_factory.mktemp("photos")
    for identity in ("alice", "bob"):
        (photos / identity).mkdir()
        for k in range(2):
            image = np.full((64, 64, 3), 40 * k + (100 if identity == "bob" else 0), np.uint8)
            cv2.imwrite(str(photos / identity / f"{k}.jpg"), image)
    _run(["flows.cli", "ingest", str(photos), "--name", "lab", "--format", "imagefolder"], workspace)
    assert (workspace / "data" / "raw" / "lab" / "alice" / "0.jpg").is_file()
    assert (workspace / "data" / "raw" / "lab.dvc").is_file()
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    assert {"name": "lab", "format": "imagefolder"} in params["ingest"]["sources"]
    status = _run(["flows.cli", "status"], workspace)
    assert "stale" in status.stdout
    again = _run(["flows.cli", "ingest", str(photos), "--name", "lab"], workspace, check=False)
    assert again.returncode == 2 and "--replace" in again.stdout
    bad = _run(["flows.cli", "ingest", str(photos), "--name", "Bad Name"], workspace, check=False)
    assert bad.returncode == 2 and "ingest.sources" in bad.stdout


@pytest.mark.slow
def test_import_weights_writes_a_tracked_record_and_refuses_what_does_not_fit(workspace):
    """`faceops import-weights fiwhn` on a checkpoint with the official names and shapes (zeros: no real weights)."""
    import json

    import torch

    from faceops.io.checkpoint import load_checkpoint

    official = json.loads((REPO / "tests" / "fixtures" / "fiwhn_official_x4.json").read_text())["tensors"]
    torch.save({name: torch.zeros(shape) for name, shape in official.items()}, workspace / "model_best_x4.pt")
    _run(["flows.cli", "import-weights", "fiwhn", str(workspace / "model_best_x4.pt")], workspace)
    target = workspace / "models" / "imported" / "fiwhn_x4.pt"
    assert (workspace / "models" / "imported" / "fiwhn_x4.pt.dvc").is_file()
    record = load_checkpoint(target, kind="model")
    assert record["model_name"] == "fiwhn_x4" and record["init"] == "official:model_best_x4.pt"
    torch.save({"head.weight": torch.zeros(32, 3, 3, 3)}, workspace / "other.pt")
    refused = _run(["flows.cli", "import-weights", "fiwhn", str(workspace / "other.pt")], workspace, check=False)
    assert refused.returncode == 2 and "refused" in refused.stdout and "UP1.0.weight" in refused.stdout
