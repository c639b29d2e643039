"""Integration: the whole pipeline on a tiny sample in a temporary git + DVC workspace.

Checks the promises users rely on: the first `faceops run` goes through Prefect and produces shards and
a report; a second run does nothing; one param change re-runs only the stages downstream of it; a
`shard` stage killed with SIGKILL and re-run gives byte-identical shards.

Each test runs alone and in any order: the module fixture ``built`` makes the first run (once per module),
read-only tests look at it, and a test that changes the workspace works on its own copy (``own_copy``) or
puts back what it changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows.workspace import stale_stages
from headless import browser  # noqa: F401  (the session's headless Chromium fixture)
from tiny_workspace import TINY, copy_project, tiny_params

pytestmark = pytest.mark.slow



def _sh(cmd: list[str], cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _env(root: Path) -> dict:
    env = {**os.environ, "PREFECT_HOME": str(root / ".faceops" / "prefect"), "OMP_NUM_THREADS": "1"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    return env


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A fresh git + DVC workspace with the tiny params; nothing has run in it."""
    root = tmp_path_factory.mktemp("ws")
    copy_project(root, tiny_params())
    env = _env(root)
    _sh(["git", "init", "-q"], root, env)
    _sh([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    _sh([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], root, env)
    return root, env


@pytest.fixture(scope="module")
def built(workspace):
    """The workspace after its first `faceops run` (made once per module) and that run's output.

    Tests may read it; one that changes it puts it back, or works on ``own_copy`` instead.
    """
    root, env = workspace
    return root, env, _faceops(["run"], root, env)


@pytest.fixture
def own_copy(built, tmp_path):
    """A copy of the built workspace (git, DVC cache, outputs, Prefect home) for a test that changes it."""
    root = tmp_path / "ws"
    shutil.copytree(built[0], root, symlinks=True)
    return root, _env(root)


def _ran(stdout: str) -> set[str]:
    """Stages the run table marks as ran ("yes")."""
    return {m.group(1) for m in re.finditer(r"│\s*([\w-]+)\s*│\s*yes\s*│", stdout)}


def _faceops(args: list[str], root: Path, env: dict) -> subprocess.CompletedProcess:
    return _sh([sys.executable, "-m", "flows.cli", *args], root, env)


def test_first_run_goes_through_prefect_and_builds_everything(built):
    root, _, result = built
    assert "pipeline finished" in result.stdout, result.stdout + result.stderr
    assert _ran(result.stdout) == set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"]), result.stdout
    index = yaml.safe_load((root / "data/shards/sample/index.json").read_text())
    n = TINY["identities"] * TINY["images_per_identity"]
    assert index["samples"] == n
    assert set(index["splits"]) <= {"train", "val", "test"}
    assert (root / "data/reports/summary.md").is_file()
    assert list((root / "data/reports").glob("contact_sample_*.png"))
    assert (root / "dvc.lock").is_file()


def test_second_run_is_a_noop_without_prefect(built):
    root, env, _ = built
    start = time.monotonic()
    result = _faceops(["run"], root, env)
    elapsed = time.monotonic() - start
    assert "Everything is up to date" in result.stdout
    assert "pipeline finished" not in result.stdout
    print(f"no-op faceops run: {elapsed:.2f} s")
    status = _faceops(["status"], root, env)
    assert "Everything is up to date" in status.stdout


def test_a_changed_default_stales_only_the_stages_that_read_its_section(built):
    """Each params section is its own module: editing keypoints' defaults leaves every other stage cached."""
    root, _, _ = built
    config = root / "src/faceops/config/keypoints.py"
    original = config.read_text()
    default = "crop_jitter: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1"
    assert default in original
    config.write_text(original.replace(default, default.replace("= 0.1", "= 0.2")))
    try:
        stale = stale_stages(root)
        assert set(stale) == {"keypoints"}, stale
        assert "src/faceops/config/keypoints.py" in str(stale["keypoints"])
    finally:
        config.write_text(original)
    assert stale_stages(root) == {}


def test_param_change_reruns_only_downstream(own_copy):
    root, env = own_copy
    assert stale_stages(root) == {}
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"]["n_pairs"] = 30
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(stale_stages(root)) == {"evaluate"}
    models_before = _digests(root / "models")
    result = _faceops(["run"], root, env)
    assert _ran(result.stdout) == {"evaluate"}, result.stdout  # the report stage reads no metrics
    assert _digests(root / "models") == models_before
    assert stale_stages(root) == {}


def test_a_structure_param_reruns_only_the_structure_stage_that_reads_it(own_copy):
    """The second pipeline shares the spine, not the cache: a structure_evaluate change leaves every face stage."""
    root, env = own_copy
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["structure_evaluate"]["plot_images"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(stale_stages(root)) == {"structure-evaluate"}
    assert _ran(_faceops(["run"], root, env).stdout) == {"structure-evaluate"}
    assert stale_stages(root) == {}


def test_first_run_evaluates_the_trained_model(built):
    root, _, _ = built
    metrics = yaml.safe_load((root / "metrics/evaluate.json").read_text())
    assert 0.0 <= metrics["sample/expr/acc"] <= 1.0
    assert (root / "models/swinface/model.pt").is_file()


def test_first_run_clusters_and_predicts_landmarks(built):
    root, _, _ = built
    cluster = yaml.safe_load((root / "metrics/cluster.json").read_text())
    assert 1 <= cluster["clusters"] <= cluster["samples"]
    assert 0.0 <= cluster["gcn/pairwise/f"] <= 1.0
    assert {"threshold/bcubed/f", "hdbscan/nmi", "agglomerative/pairwise/f", "propagation/min_score"} <= set(cluster)
    pseudo = yaml.safe_load((root / "data/pseudo/sample/index.json").read_text())
    assert pseudo["samples"] == cluster["pseudo_samples"]
    keypoints = yaml.safe_load((root / "metrics/keypoints.json").read_text())
    assert keypoints["labelled"] + keypoints["heldout"] == TINY["identities"] * TINY["images_per_identity"]
    assert keypoints["heldout/nme"] > 0.0
    assert (root / "models/keypoints/keypoints.pt").is_file()


#: Imported by every Python process of the killed `dvc repro` (it comes first on PYTHONPATH): the shard stage
#: stops for good at its first tar member after one shard file is complete in its staging folder, and says so.
PAUSE_SHARD_STAGE = """
import os, sys
if "stages.shard" in sys.orig_argv:
    import pathlib, tarfile, time
    _addfile = tarfile.TarFile.addfile

    def addfile(self, *args, **kwargs):
        if any(pathlib.Path("data").glob(".tmp-shards-*/*/*.tar")):
            pathlib.Path(os.environ["FACEOPS_TEST_PAUSED"]).write_text(str(os.getpid()))
            while True:
                time.sleep(60)
        return _addfile(self, *args, **kwargs)

    tarfile.TarFile.addfile = addfile
"""


def test_killed_shard_stage_rerun_gives_identical_bytes(own_copy, tmp_path):
    root, env = own_copy
    before = _digests(root / "data/shards")
    hook, paused = tmp_path / "hook", tmp_path / "paused"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PAUSE_SHARD_STAGE)
    hooked = {**env, "FACEOPS_TEST_PAUSED": str(paused),
              "PYTHONPATH": os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH")) if p)}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "--single-item", "--force", "shard"],
        cwd=root, env=hooked, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not paused.exists():
            assert proc.poll() is None, "the shard stage ended before it had written one shard of several"
            assert time.monotonic() < deadline, "the shard stage did not write a shard within 300 s"
            time.sleep(0.05)
        assert list((root / "data").glob(".tmp-shards-*")), "killed outside the shard stage's writing"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _faceops(["run"], root, env)
    assert _digests(root / "data/shards") == before
    assert not list((root / "data").glob(".tmp-*"))
    assert stale_stages(root) == {}


def test_plots_render_offline_to_png(built):
    root, env, _ = built
    rendered = root / "plots" / "rendered"
    assert not rendered.exists()
    try:
        _faceops(["plots"], root, env)
        pngs = sorted(rendered.glob("*.png"))
        assert any("loss_total" in p.name for p in pngs), pngs
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    finally:
        shutil.rmtree(rendered, ignore_errors=True)


def test_report_adds_only_its_page_to_the_workspace(built):
    """DVC copies image plots to an output folder (`dvc_plots/` by default) when asked for their specs: the
    report must not leave that behind (a `make demo` would end with an untracked folder)."""
    root, env, _ = built
    before = {p.name for p in root.iterdir()}
    try:
        _faceops(["report"], root, env)
        assert {p.name for p in root.iterdir()} - before <= {"reports"}
    finally:
        shutil.rmtree(root / "reports", ignore_errors=True)


def test_report_page_of_a_real_run_renders_in_a_headless_browser(built, browser, tmp_path):
    """`faceops report` on the run's outputs: headline, plots and contact sheets render, the console stays clean."""
    from headless import render

    root, env, _ = built
    try:
        result = _faceops(["report"], root, env)
        assert "verification accuracy" in result.stdout and "report page:" in result.stdout, result.stdout
        shown = render(browser, root / "reports" / "index.html", screenshot=tmp_path / "page.png")
    finally:
        shutil.rmtree(root / "reports", ignore_errors=True)
    assert shown["console"] == []
    assert len(shown["images"]) >= 4  # loss/total of pretrain and train, ROC, confusion, contact sheets
    assert all(loaded and natural > 0 for _, loaded, natural, _ in shown["images"]), shown["images"]
    assert all(rows > 0 and height > 0 for _, rows, height in shown["tables"]), shown["tables"]
    assert "expression accuracy" in shown["text"] and "Stage run times" in shown["text"]


def test_train_evaluate_and_embed_start_from_imported_official_weights(own_copy, tmp_path):
    """`faceops import-weights swinface` on an official-layout checkpoint; `train.init: imported:...@sha` starts
    train from it, and embed (through the pipeline) and evaluate read the result. evaluate's command is run as
    dvc.yaml writes it but without its adapt candidate: through DVC it would wait for adapt to train the full-size
    model too (40 s more here), and adapt's variant is tied to train's by the schema (test_config)."""
    import torch

    from faceops.models import create_model
    from faceops.models.swinface_official import to_official
    from faceops.train import load_trained_model

    root, env = own_copy
    torch.manual_seed(0)
    official = tmp_path / "checkpoint_step_79999_gpu_0.pt"
    torch.save({"global_step": 79999, **to_official(create_model("swinface_swin_t"))}, official)
    imported = _faceops(["import-weights", "swinface", str(official)], root, env).stdout
    init = re.search(r"imported:swinface_swin_t@[0-9a-f]{12}", imported).group(0)  # the value to set
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update({"model": "swinface_swin_t", "init": init, "steps": 1, "warmup_steps": 0, "batch_size": 4})
    params["adapt"]["model"] = "swinface_swin_t"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = _faceops(["run", "--stage", "embed"], root, env)
    assert {"train", "embed"} <= _ran(result.stdout), result.stdout
    model, record = load_trained_model(root / "models/swinface/model.pt")
    assert (record["model_name"], record["init"], record["step"]) == ("swinface_swin_t", init, 1)
    assert yaml.safe_load((root / "metrics/embed.json").read_text())["sample/test/dim"] == 512
    command = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["evaluate"]["cmd"].split()
    command = command[: command.index("--candidates")] + command[command.index("--candidates") + 2 :]
    command[command.index("--metrics") + 1] = str(tmp_path / "evaluate.json")
    command[command.index("--plots") + 1] = str(tmp_path / "plots")
    done = subprocess.run([sys.executable, *command[1:]], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    evaluated = yaml.safe_load((tmp_path / "evaluate.json").read_text())
    assert 0.0 <= evaluated["sample/verif/acc"] <= 1.0 and "sample/attr/mean_acc" in evaluated
