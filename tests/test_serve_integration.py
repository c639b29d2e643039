"""`faceops serve`: how deployments are wired (fast), refusals (fast), and end to end on loopback (slow).

The slow test runs the real pipeline on tiny params. One served workspace goes through the whole operations story: the server starts, photos dropped in the
inbox become a new DVC-tracked source version through the event-triggered new-data deployment, a second
drop while the first run is still running queues and runs after it (never two pipeline runs at once), each
run records a version commit and a promotion decision, and stopping the server ends every process and
keeps the retrain schedule for the next start.

Bounded: every wait has a deadline, the server listens on 127.0.0.1 only, and the pipeline is tiny (no
pre-training, 3 training steps) so the two runs take a few minutes on 2 busy cores. Ordered, not timed:
"while the first run is still running" is made true by holding the workspace's writers lock, so the
first run cannot start a stage until the second run exists, however fast or slow the machine is.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from faceops.config.params import parse_params
from faceops.sample import generate_sample
from flows.serve import EVENT_SETTLED, ServeError, build_deployments, workspace_slug
from flows.workspace import STATE_DIR, WRITERS_LOCK, stale_stages
from tiny_workspace import copy_project, tiny_params

REPO = Path(__file__).resolve().parents[1]
SERVER_START_S = 240
RUN_S = 480
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
UNUSED_STAGES = ("embed", "cluster", "robustness", "report", "structure-sample", "structure-shard", "structure-train",
                 "structure-evaluate")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _make_workspace(root: Path) -> dict:
    ops = {"inbox": {"path": "data/inbox", "settle_seconds": 2.0, "poll_seconds": 0.5},
           "retrain": {"cron": "0 3 * * 0", "timezone": "Europe/Berlin", "enabled": True},
           "commit_versions": True}  # fmt: skip
    # embed, cluster, robustness, report and the structure pipeline play no part in the operations story (nothing
    # it checks reads their outputs; the monitor, the promotion and the version commit stay)
    copy_project(root, tiny_params(pretrain={"enabled": False}, ops=ops), drop_stages=UNUSED_STAGES)
    (root / ".gitignore").write_text(".faceops/\n")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(root / ".faceops" / "prefect"), OMP_NUM_THREADS="1",
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
               GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="test@example.com")  # fmt: skip
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"],
                [sys.executable, "-m", "dvc", "config", "core.analytics", "false"]):  # fmt: skip
        subprocess.run(cmd, cwd=root, env=env, check=True, timeout=120, capture_output=True)
    return env


def _drop(folder: Path, files: dict[str, bytes]) -> None:
    """Write like a careful uploader: a temporary name, then a rename."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / f"{name}.part").write_bytes(data)
        os.replace(folder / f"{name}.part", folder / name)


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def _wait(predicate, timeout: float, what: str, server: subprocess.Popen, log: Path, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert server.poll() is None, f"faceops serve exited ({server.returncode}) while waiting for {what}:\n" \
                                      + log.read_text()[-4000:]  # fmt: skip
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; serve output:\n{log.read_text()[-4000:]}")


class _Api:
    """A few reads through Prefect's sync client, pointed at the served workspace's server."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _client(self):
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.url}):
            return get_client(sync_client=True)

    def runs(self, flow_name: str) -> list:
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName
        from prefect.client.schemas.sorting import FlowRunSort

        with self._client() as client:
            return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                                         sort=FlowRunSort.START_TIME_ASC)  # fmt: skip

    def deployments(self) -> list:
        with self._client() as client:
            return client.read_deployments()

    def artifacts(self, key: str) -> list:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        with self._client() as client:
            return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def _state(run) -> str:
    return run.state.type.value if run.state else "NONE"


@contextmanager
def _writers_held(root: Path, server: subprocess.Popen, log: Path) -> Iterator[None]:
    """Hold the workspace's writers lock exclusively: meanwhile no run can start a stage (each DVC child and
    stage command takes it shared first, and waits), so a run that is running stays running."""
    with open(root / STATE_DIR / WRITERS_LOCK, "a+") as handle:

        def take() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:  # a stage is running: its lock goes when it ends
                return False

        _wait(take, 300, "the writers lock (free between two stages)", server, log, every=0.01)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _serve(root: Path, env: dict, port: int, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--port", str(port), "--no-ui"],
                                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def _stop(server: subprocess.Popen, sig: int) -> int:
    server.send_signal(sig)
    try:
        return server.wait(timeout=180)  # generous: a loaded 2-core CI box once needed > 90 s
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        raise AssertionError("faceops serve did not stop within 180 s") from None


def _params(**retrain):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["ops"] = {"retrain": {"cron": "30 2 * * 1", "timezone": "Europe/Berlin", **retrain}}
    return parse_params(raw)


def test_deployments_are_named_after_the_workspace_and_wired(tmp_path):
    deployments = {d.flow_name: d for d in build_deployments(tmp_path, _params(enabled=False))}
    slug = workspace_slug(tmp_path)
    assert set(deployments) == {"faceops-pipeline", "faceops-new-data", "faceops-retrain"}
    for deployment in deployments.values():
        assert deployment.name == slug
        assert deployment.parameters == {"root": str(tmp_path)}
        assert deployment.entrypoint.startswith("flows.")  # a module path: runs from any working directory
    (trigger,) = deployments["faceops-new-data"].triggers
    assert trigger.expect == {EVENT_SETTLED}
    assert trigger.match.model_dump() == {"prefect.resource.id": f"faceops.inbox.{slug}.*"}
    assert trigger.parameters == {"source": "{{ event.resource['faceops.source'] }}"}
    (schedule,) = deployments["faceops-retrain"].schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 2 * * 1", "Europe/Berlin")
    assert schedule.active is False and schedule.slug == "faceops-retrain"  # disabled: kept, not deleted
    assert not deployments["faceops-new-data"].schedules and not deployments["faceops-pipeline"].schedules


def test_an_unknown_timezone_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ServeError, match="ops.retrain"):
        build_deployments(tmp_path, _params(timezone="Mars/Olympus_Mons"))


def test_workspace_slug_names_the_folder_and_tells_paths_apart(tmp_path):
    a, b = tmp_path / "my ws", tmp_path / "x" / "my ws"
    assert workspace_slug(a).startswith("my-ws-") and workspace_slug(a) == workspace_slug(a)
    assert workspace_slug(a) != workspace_slug(b)


@pytest.fixture
def bare_workspace(tmp_path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def _serve_refusal(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"COLUMNS": "400"} | env
    return subprocess.run([sys.executable, "-m", "flows.cli", "serve", *args], cwd=root, env=full_env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_serve_refuses_a_busy_port(bare_workspace):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = _serve_refusal(bare_workspace, "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2
    assert "in use" in result.stdout and "--port" in result.stdout


def test_serve_refuses_an_unreachable_api_url(bare_workspace):
    url = f"http://127.0.0.1:{_free_port()}/api"
    result = _serve_refusal(bare_workspace, PREFECT_API_URL=url)
    assert result.returncode == 2 and "does not answer" in result.stdout


def test_serve_refuses_a_second_serve_of_the_same_workspace(bare_workspace):
    lock = bare_workspace / ".faceops" / "serve.lock"
    lock.parent.mkdir()
    with open(lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = _serve_refusal(bare_workspace, "--port", str(_free_port()))
    assert result.returncode == 2 and "already runs" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_inbox_drops_become_versions_queued_one_run_at_a_time(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    env = _make_workspace(root)
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = tmp_path / "serve.log"
    photos = [im.jpeg for im in generate_sample(2, 3, seed=7, min_side=160, max_side=200)]
    inbox = root / "data" / "inbox" / "cam"
    client = _Api(api)
    server = _serve(root, env, port, log)
    try:
        _wait(lambda: _healthy(api), SERVER_START_S, "the Prefect server", server, log)
        _wait(lambda: len(client.deployments()) == 3, 60, "three deployments", server, log)

        # Batch 1 (3 photos) plus a download still in progress: the first run is the full pipeline.
        started = time.monotonic()
        _drop(inbox, {"a.jpg": photos[0], "b.jpg": photos[1], "c.jpg": photos[2]})
        (inbox / "d.jpg.part").write_bytes(photos[3][:100])
        # The first run has taken batch 1 (the files left the inbox) and has a whole pipeline to go: from
        # here until the second run exists, the writers lock keeps it from finishing (or starting a stage).
        _wait(lambda: not {"a.jpg", "b.jpg", "c.jpg"} & {p.name for p in inbox.iterdir()}, 120,
              "the first new-data run to take batch 1", server, log, every=0.01)  # fmt: skip
        with _writers_held(root, server, log):
            (first,) = client.runs("faceops-new-data")
            assert _state(first) == "RUNNING", _state(first)
            # Batch 2 while the first run is running: two new photos and a copy of a.jpg under another name.
            _drop(inbox, {"e.jpg": photos[4], "f.jpg": photos[5], "a_copy.jpg": photos[0]})
            _wait(lambda: len(client.runs("faceops-new-data")) == 2, 120, "the second new-data run to be created",
                  server, log)  # fmt: skip
            (still,) = [r for r in client.runs("faceops-new-data") if r.id == first.id]
            assert _state(still) == "RUNNING", "the first run ended while the writers lock was held"

        def both_done():
            runs = client.runs("faceops-new-data")
            return runs if len(runs) == 2 and all(_state(r) in TERMINAL for r in runs) else None

        runs = _wait(both_done, RUN_S, "both new-data runs to finish", server, log)
        print(f"two new-data runs finished {time.monotonic() - started:.0f} s after the first drop")
        assert [_state(r) for r in runs] == ["COMPLETED", "COMPLETED"], log.read_text()[-4000:]
        one, two = runs
        assert one.id == first.id
        assert two.created < one.end_time, "the second run was not triggered while the first was running"
        assert two.start_time >= one.end_time, "the second run overlapped the first instead of queueing"
        pipelines = [r for r in client.runs("faceops-pipeline") if r.start_time is not None]
        assert len(pipelines) == 2
        assert pipelines[1].start_time >= pipelines[0].end_time, "two pipeline runs at once"
        assert client.artifacts("faceops-new-data") and client.artifacts("faceops-promotion")
    finally:
        returncode = _stop(server, signal.SIGINT)
    assert returncode == 0, log.read_text()[-4000:]
    assert not _healthy(api), "the Prefect server outlived faceops serve"

    # The data: one source version per run, every photo once, the half-written file still waiting.
    entry = yaml.safe_load((root / "data" / "raw" / "cam.dvc").read_text())["outs"][0]
    assert entry["nfiles"] == 5
    assert sorted(p.name for p in (root / "data" / "raw" / "cam").iterdir()) == ["a.jpg", "b.jpg", "c.jpg", "e.jpg",
                                                                                 "f.jpg"]  # fmt: skip
    assert sorted(p.name for p in inbox.iterdir()) == ["d.jpg.part"]
    assert {"name": "cam", "format": "unlabeled"} in yaml.safe_load((root / "params.yaml").read_text())["ingest"]["sources"]
    subjects = subprocess.run(["git", "log", "--format=%s"], cwd=root, capture_output=True, text=True, check=True).stdout
    assert "new data in source 'cam' (+3 files)" in subjects and "new data in source 'cam' (+2 files)" in subjects
    tags = subprocess.run(["git", "tag", "--list", "model@v*"], cwd=root, capture_output=True, text=True, check=True)
    assert "model@v1" in tags.stdout.split()
    assert yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert stale_stages(root) == {}, "dvc.lock does not match the outputs"

    # A restart re-applies the deployments: the retrain schedule is still there and active, not duplicated.
    server = _serve(root, env, port, log)
    try:
        _wait(lambda: _healthy(api), SERVER_START_S, "the restarted server", server, log)

        # The old deployments are still in the database; wait until this start's runner has re-applied them.
        _wait(lambda: "stop with Ctrl-C" in log.read_text().split("faceops serve stopped")[-1], 60,
              "the deployments to be re-applied", server, log)  # fmt: skip
        deployments = client.deployments()
        assert len(deployments) == 3
        scheduled = [d for d in deployments if d.schedules]
        assert [d.name for d in scheduled] == [deployments[0].name] and len(scheduled[0].schedules) == 1
        schedule = scheduled[0].schedules[0]
        assert schedule.active and not any(d.paused for d in deployments)
        assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 3 * * 0", "Europe/Berlin")

        # A `faceops run` typed while serve runs uses serve's server (no temporary one): it shows in its UI.
        before = len(client.runs("faceops-pipeline"))
        typed = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--stage", "sample", "--force"], cwd=root,
                               env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert typed.returncode == 0, typed.stdout + typed.stderr
        assert f"using the Prefect server of faceops serve at {api}" in typed.stdout
        assert len(client.runs("faceops-pipeline")) == before + 1
    finally:
        returncode = _stop(server, signal.SIGTERM)
    assert returncode == 0, log.read_text()[-4000:]
