"""A fresh checkout reproduces the committed dvc.lock: the data stages' outputs byte for byte.

What a new user does on a fresh machine, minus the install: clone the committed HEAD, run the data stages
(`dvc repro shard`: sample, ingest, keypoints, align, shard) with the committed params.yaml (the demo's
sizes) and compare the hashes DVC records for their outputs with the committed dvc.lock. `sample`,
`ingest`, `align` and `shard` must match; `keypoints` trains a network, and its outputs are reported when
they differ (align reads its pseudo-landmarks only for faces without given landmarks: none in the sample).

A failure names each stage whose outputs differ, how (hash, size, file count), and the versions that
decide output bytes (``env/*`` in metrics/<stage>.json) as committed and as run here, so a library
upgrade shows as the cause.

Cost: by default keypoints trains 1 epoch instead of the demo's 30 (about 2 minutes in all): align uses the
sample's given landmarks for every face, so sample, ingest, align and shard must still match the committed
lock (keypoints' own outputs are then not compared). ``FACEOPS_FRESH_CHECKOUT=full`` runs the committed params
as they are, keypoints' 30 epochs included (over 10 minutes on 2 cores), and reports keypoints' differences.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from faceops.runtime import decisive_versions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[1]
TARGET = "shard"
#: Stages whose outputs must match the committed lock byte for byte.
DATA_STAGES = ("sample", "ingest", "align", "shard")
#: Stages run on the way whose differences are reported, not failed (a trained network).
TRAINED_STAGES = ("keypoints",)
ENV_PREFIX = "env/"
#: Unless ``full``: keypoints trains 1 epoch (its outputs are then not compared); ``full``: the committed params.
QUICK = os.environ.get("FACEOPS_FRESH_CHECKOUT", "") != "full"


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def _outs(lock: dict, stage: str) -> dict[str, dict]:
    """path -> what dvc.lock records for it (md5/hash, size, nfiles) for one stage's outputs."""
    return {o["path"]: {k: v for k, v in o.items() if k != "path"} for o in lock["stages"][stage].get("outs", [])}


def _metrics(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _committed_metrics(path: str) -> dict:
    shown = subprocess.run(["git", "show", f"HEAD:{path}"], check=False, cwd=REPO, capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else {}


def _results(metrics: dict) -> dict:
    """A stage's metrics without the recorded versions."""
    return {k: v for k, v in metrics.items() if not k.startswith(ENV_PREFIX)}


def _versions(metrics: dict) -> str:
    found = {k.removeprefix(ENV_PREFIX): v for k, v in sorted(metrics.items()) if k.startswith(ENV_PREFIX)}
    return ", ".join(f"{k} {v}" for k, v in found.items()) if found else "not recorded"


def _differences(stage: str, committed: dict, fresh: dict, clone: Path) -> list[str]:
    """Lines describing how ``stage``'s outputs differ; empty when they match.

    A metrics file that differs only in its ``env/*`` keys is not a difference of the stage's results
    (it names another library version, which the other outputs then did not depend on): reported apart.
    """
    lines = []
    before, after = _outs(committed, stage), _outs(fresh, stage)
    for path in sorted(set(before) | set(after)):
        if before.get(path) == after.get(path):
            continue
        if path.startswith("metrics/"):
            old, new = _committed_metrics(path), _metrics(clone / path)
            if _results(old) == _results(new):
                continue  # only the recorded versions differ: listed in the header of the message
            changed = sorted(k for k in set(_results(old)) | set(_results(new)) if old.get(k) != new.get(k))
            lines.append(
                f"  {path}: values differ: " + ", ".join(f"{k} {old.get(k)} -> {new.get(k)}" for k in changed[:8])
            )
            continue
        lines.append(f"  {path}: committed {before.get(path)} / fresh {after.get(path)}")
    return lines


def test_fresh_checkout_reproduces_the_committed_data_stages(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    _run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)], tmp_path, dict(os.environ), 300)
    committed = yaml.safe_load((clone / "dvc.lock").read_text())
    head = _run(["git", "rev-parse", "--short", "HEAD"], clone, dict(os.environ), 60).stdout.strip()

    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    # `python -m stages.*` runs this venv's python, on the clone's code (not the editable install's)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    env["PYTHONPATH"] = os.pathsep.join([str(clone / "src"), str(clone)])
    _run([sys.executable, "-m", "dvc", "config", "--local", "core.analytics", "false"], clone, env, 60)
    if QUICK:
        params = yaml.safe_load((clone / "params.yaml").read_text())
        params["keypoints"]["epochs"] = 1
        (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.monotonic()
    _run([sys.executable, "-m", "dvc", "repro", "--no-run-cache", TARGET], clone, env, 3500)
    seconds = time.monotonic() - start
    fresh = yaml.safe_load((clone / "dvc.lock").read_text())

    data = {s: d for s in DATA_STAGES if (d := _differences(s, committed, fresh, clone))}
    trained = {} if QUICK else {s: d for s in TRAINED_STAGES if (d := _differences(s, committed, fresh, clone))}
    versions = []
    for stage in (*DATA_STAGES, *TRAINED_STAGES):
        path = f"metrics/{stage}.json"
        old, new = _versions(_committed_metrics(path)), _versions(_metrics(clone / path))
        versions.append(
            f"  {stage}: committed: {old}" + ("" if new == old else f"\n  {' ' * len(stage)}  fresh:     {new}")
        )
    mode = " (quick: keypoints trained 1 epoch, not compared)" if QUICK else ""
    report = [f"dvc repro {TARGET} on a fresh clone of {head} took {seconds:.0f} s{mode}.",
              "Versions that decide output bytes (env/* in metrics/<stage>.json):", *versions,
              "  here: " + ", ".join(f"{k} {v}" for k, v in decisive_versions().items())]  # fmt: skip
    for stage, lines in trained.items():
        report += [
            f"{stage} (trained network; reported, not failed): outputs differ from the committed dvc.lock:",
            *lines,
        ]
    for stage, lines in data.items():
        report += [f"{stage}: outputs differ from the committed dvc.lock:", *lines]
    print("\n".join(report))
    assert not data, (
        f"data stages {', '.join(data)} did not reproduce the committed dvc.lock on a fresh checkout "
        "(if the code changed since dvc.lock was last written, re-run the pipeline and commit dvc.lock):\n"
        + "\n".join(report)
    )
