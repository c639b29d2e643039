"""Versions: commits of exactly the pipeline files, numbered by trailer; listing with metrics; checkout.

The workspace is a real git + DVC repository with a one-stage test-double pipeline (``stub.py``: copies
the DVC-tracked input into a "model" and writes metrics/evaluate.json from values in stub.yaml), so a
version takes a fraction of a second instead of a training run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.checkout import checkout_version
from flows.gitrepo import VersionError, is_pipeline_file
from flows.history import Version, list_versions
from flows.versioning import record_version

IDENTITY = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}  # fmt: skip

STUB = '''"""Test double of train + evaluate: the model is a copy of the input, the metrics come from stub.yaml."""
import json, pathlib, shutil, yaml
model = pathlib.Path("models/model"); model.mkdir(parents=True, exist_ok=True)
shutil.copy("data/raw/input.txt", model / "weights.txt")
live = pathlib.Path("models/model_live"); live.mkdir(parents=True, exist_ok=True)
(live / "metrics.json").write_text(json.dumps({"step": 1}))
pathlib.Path("metrics").mkdir(exist_ok=True)
metrics = yaml.safe_load(open("stub.yaml"))["metrics"]
pathlib.Path("metrics/evaluate.json").write_text(json.dumps(metrics, sort_keys=True))
'''

V1 = {"sample/verif/acc": 0.8, "sample/age/mae": 6.0}
V2 = {"sample/verif/acc": 0.9, "sample/age/mae": 5.0}


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"git {args}: {result.stderr}"
    return result.stdout


def make_workspace(root: Path) -> Path:
    """A git + DVC workspace with the stub pipeline (no version recorded yet)."""
    from dvc.repo import Repo

    root.mkdir(parents=True, exist_ok=True)
    (root / "stub.py").write_text(STUB)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {
        "cmd": f"{sys.executable} stub.py",
        "deps": ["stub.py", "data/raw/input.txt"],
        "params": [{"stub.yaml": ["metrics"]}],
        "outs": ["models/model", {"models/model_live": {"cache": False}}],
        "metrics": [{"metrics/evaluate.json": {"cache": False}}],
    }}}))  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump({"ops": {"promotion": {"metric": "sample/verif/acc"}}}))
    git(root, "init", "-q")
    Repo.init(str(root)).close()
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "workspace skeleton")
    return root


def run_pipeline(root: Path, data: str, metrics: dict[str, float]) -> None:
    """New input bytes and stub metrics, ``dvc add`` + ``dvc repro`` in-process (what a pipeline run leaves)."""
    from dvc.repo import Repo

    (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (root / "data" / "raw" / "input.txt").write_text(data)
    (root / "stub.yaml").write_text(yaml.safe_dump({"metrics": metrics}))
    with contextlib.chdir(root), Repo(str(root)) as repo:  # DVC's add/repro resolve paths against the cwd
        repo.add(["data/raw/input.txt"])
        repo.reproduce()


@pytest.fixture(scope="module", autouse=True)
def git_identity():
    with pytest.MonkeyPatch.context() as mp:
        for key, value in IDENTITY.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory) -> Path:
    """Template: v1 (input 'one', acc 0.8) and v2 (input 'two', acc 0.9); tests get a copy."""
    root = make_workspace(tmp_path_factory.mktemp("template") / "ws")
    run_pipeline(root, "one\n", V1)
    assert record_version(root, "first data", push=False).number == 1
    run_pipeline(root, "two\n", V2)
    assert record_version(root, "new data in source 'inbox_demo' (+1 files)", push=False).number == 2
    return root


@pytest.fixture
def ws(two_versions, tmp_path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(two_versions, copy, symlinks=True)
    return copy


def test_pipeline_file_rule():
    yes = ["dvc.lock", "dvc.yaml", "params.yaml", "data/raw/x.dvc", "data/raw/.gitignore", "models/.gitignore",
           "metrics/evaluate.json", "plots/evaluate/roc.json", "models/swinface_live/metrics.json"]  # fmt: skip
    no = ["README.md", "src/faceops/config.py", "data/raw/sample/a.jpg", "models/swinface/model.pt", "stub.yaml"]
    assert all(map(is_pipeline_file, yes)) and not any(map(is_pipeline_file, no))


def test_record_commits_only_pipeline_files(tmp_path):
    root = make_workspace(tmp_path / "ws")
    run_pipeline(root, "one\n", V1)
    (root / "notes.txt").write_text("user's unrelated work\n")
    (root / "stub.py").write_text(STUB + "# edited, staged by the user\n")
    git(root, "add", "stub.py")
    version = record_version(root, "first data", push=False)
    assert isinstance(version, Version) and version.number == 1
    committed = set(git(root, "show", "--name-only", "--format=", "HEAD").split())
    assert committed == {"dvc.lock", "data/raw/input.txt.dvc", "data/raw/.gitignore", "models/.gitignore",
                         "metrics/evaluate.json", "models/model_live/metrics.json"}  # fmt: skip
    status = git(root, "status", "--porcelain")
    assert "?? notes.txt" in status and "M  stub.py" in status  # untouched: still untracked / still staged
    assert "stub.yaml" in status  # not a pipeline file (test-double input), so not committed
    assert record_version(root, "again", push=False) is None
    assert git(root, "rev-parse", "HEAD").strip() == version.sha


def test_numbering_and_message_name_changed_outputs(ws):
    (ws / "params.yaml").write_text(yaml.safe_dump({"ops": {"promotion": {"metric": "sample/age/mae"}}}))
    version = record_version(ws, "params edited", push=False)
    assert version.number == 3
    message = git(ws, "log", "-1", "--format=%B")
    assert message.splitlines()[0] == "faceops v3: params edited; sample/age/mae 5"
    assert message.rstrip().endswith("Faceops-Version: 3")
    v2 = git(ws, "log", "-1", "--format=%B", "HEAD~1")
    assert v2.splitlines()[0] == ("faceops v2: new data in source 'inbox_demo' (+1 files); model changed; "
                                  "sample/verif/acc 0.9")  # fmt: skip
    assert "Stages changed in dvc.lock: train" in v2
    assert "models/model (stage train):" in v2 and "data/raw/input.txt (data/raw/input.txt.dvc):" in v2
    assert "models/model_live" not in v2.splitlines()[0]


def test_list_versions_returns_metrics_newest_first(ws):
    git(ws, "tag", "-a", "model@v1", "-m", "test tag", "HEAD~1")
    versions = list_versions(ws)
    assert [v.number for v in versions] == [2, 1]
    assert versions[0].metrics == V2 and versions[1].metrics == V1
    assert versions[1].tags == ("model@v1",) and versions[0].tags == ()
    assert versions[0].sha == git(ws, "rev-parse", "HEAD").strip()
    assert versions[0].date[:4].isdigit() and "T" in versions[0].date


def _model_bytes(root: Path) -> str:
    return (root / "models" / "model" / "weights.txt").read_text()


def test_checkout_restores_old_bytes_then_latest(ws):
    head = git(ws, "rev-parse", "HEAD").strip()
    version = checkout_version(ws, "v1")
    assert version.number == 1 and version.subject.startswith("faceops v1:")
    assert _model_bytes(ws) == "one\n" and (ws / "data" / "raw" / "input.txt").read_text() == "one\n"
    assert json.loads((ws / "metrics" / "evaluate.json").read_text()) == V1
    assert git(ws, "rev-parse", "HEAD").strip() == head  # the branch did not move
    assert "dvc.lock" in git(ws, "status", "--porcelain")
    assert checkout_version(ws, "2").number == 2  # the restored state is not "uncommitted changes"
    assert _model_bytes(ws) == "two\n" and json.loads((ws / "metrics" / "evaluate.json").read_text()) == V2
    assert git(ws, "status", "--porcelain", "--", "dvc.lock", "metrics", "models", "data") == ""


def test_checkout_removes_outputs_the_version_lacks_and_rollback_commits(ws):
    from dvc.repo import Repo

    (ws / "data" / "raw" / "extra.txt").write_text("a source added in v3\n")
    with contextlib.chdir(ws), Repo(str(ws)) as repo:
        repo.add(["data/raw/extra.txt"])
    assert record_version(ws, "new source", push=False).number == 3
    checkout_version(ws, "v1")
    assert not (ws / "data" / "raw" / "extra.txt").exists() and not (ws / "data" / "raw" / "extra.txt.dvc").exists()
    checkout_version(ws, "v3")
    assert (ws / "data" / "raw" / "extra.txt").read_text() == "a source added in v3\n"
    checkout_version(ws, "v1")
    rollback = record_version(ws, "rollback", push=False)
    assert rollback.number == 4 and "Restores the data and models of v1" in git(ws, "log", "-1", "--format=%B")
    assert git(ws, "diff", "--stat", "HEAD~3", "HEAD", "--", "dvc.lock", "data", "metrics") == ""  # v4 pins v1's hashes
    assert _model_bytes(ws) == "one\n" and git(ws, "status", "--porcelain", "--", "dvc.lock", "data") == ""


def test_checkout_by_tag_and_sha(ws):
    git(ws, "tag", "-a", "model@v1", "-m", "test tag", "HEAD~1")
    assert checkout_version(ws, "model@v1").number == 1 and _model_bytes(ws) == "one\n"
    sha = git(ws, "rev-parse", "HEAD").strip()
    assert checkout_version(ws, sha[:10]).number == 2 and _model_bytes(ws) == "two\n"
    with pytest.raises(VersionError, match=r"unknown version 'v9'.*v1, v2"):
        checkout_version(ws, "v9")


def test_checkout_refuses_dirty_tree_unless_forced(ws):
    (ws / "params.yaml").write_text("ops: {}\n")
    lock = (ws / "dvc.lock").read_bytes()
    with pytest.raises(VersionError, match=r"uncommitted changes to pipeline files: params\.yaml.*--force"):
        checkout_version(ws, "v1")
    assert (ws / "dvc.lock").read_bytes() == lock and _model_bytes(ws) == "two\n"
    checkout_version(ws, "v1", force=True)
    assert _model_bytes(ws) == "one\n" and "ops: {}" not in (ws / "params.yaml").read_text()


def test_checkout_refuses_modified_dvc_output(ws):
    (ws / "models" / "model" / "weights.txt").write_text("hand-edited\n")
    with pytest.raises(VersionError, match=r"models/model \(DVC output\)"):
        checkout_version(ws, "v1")
    assert _model_bytes(ws) == "hand-edited\n"


def _drop_cache_object(root: Path, content: str) -> None:
    """Delete the DVC cache file holding ``content``, as on a machine that never had it."""
    for path in (root / ".dvc" / "cache").rglob("*"):
        if path.is_file() and path.read_bytes() == content.encode():
            path.chmod(0o644)
            path.unlink()


def test_missing_cache_without_remote_fails_clearly_and_changes_nothing(ws):
    _drop_cache_object(ws, "one\n")
    lock = (ws / "dvc.lock").read_bytes()
    with pytest.raises(VersionError, match=r"dvc pull.*failed.*put back"):
        checkout_version(ws, "v1")
    assert (ws / "dvc.lock").read_bytes() == lock and _model_bytes(ws) == "two\n"


def test_remote_push_on_record_and_pull_on_checkout(ws, tmp_path):
    from dvc.repo import Repo

    remote = tmp_path / "remote"
    with Repo(str(ws)) as repo, repo.config.edit() as conf:
        conf["remote"]["shared"] = {"url": str(remote)}
        conf["core"]["remote"] = "shared"
    run_pipeline(ws, "three\n", V2)
    version = record_version(ws, "pushed data", push=True)
    assert version.number == 3 and version.pushed is True, version.push_error
    checkout_version(ws, "v1")
    _drop_cache_object(ws, "three\n")  # as on a machine that only has the remote
    checkout_version(ws, "v3")
    assert _model_bytes(ws) == "three\n"


def test_failed_push_keeps_the_commit(ws, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the remote folder should be\n")
    from dvc.repo import Repo

    with Repo(str(ws)) as repo, repo.config.edit() as conf:
        conf["remote"]["broken"] = {"url": str(blocker / "remote")}
        conf["core"]["remote"] = "broken"
    (ws / "params.yaml").write_text(yaml.safe_dump({"ops": {}}))
    version = record_version(ws, "push fails")
    assert version.pushed is False and "dvc push" in version.push_error
    assert git(ws, "rev-parse", "HEAD").strip() == version.sha


def test_commits_without_a_configured_identity_use_the_fallback(ws, monkeypatch):
    for key in IDENTITY:
        monkeypatch.delenv(key)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)  # as in a fresh container: no ~/.gitconfig
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (ws / "params.yaml").write_text(yaml.safe_dump({"ops": {}}))
    record_version(ws, "unattended", push=False)
    assert git(ws, "log", "-1", "--format=%an <%ae>") == "faceops <faceops@localhost>\n"
