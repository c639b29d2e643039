"""How the flows ask DVC: the run plan (stale vs settled stages), one stage's `dvc repro` in a forked child
(output, environment, failure, timeout), and finding the Prefect server of a running `faceops serve`."""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flows.workspace import (
    LOG_DIR,
    SERVE_LOCK,
    SERVE_STATE,
    STATE_DIR,
    StageFailed,
    plan_run,
    run_stage,
    served_api_url,
)

DVC_YAML = """stages:
  first:
    cmd: cp a.txt first.txt
    deps: [a.txt]
    outs: [first.txt]
  second:
    cmd: cp first.txt second.txt
    deps: [first.txt]
    outs: [second.txt]
  apart:
    cmd: cp b.txt apart.txt
    deps: [b.txt]
    outs: [apart.txt]
  probe:
    cmd: sh -c 'echo "probe says $FACEOPS_PROBE"; echo "$FACEOPS_PROBE" > probe.txt'
    outs: [probe.txt]
  broken:
    cmd: sh -c 'echo "about to fail"; exit 3'
  slow:
    cmd: sh -c 'echo $$ > slow.pid; exec sleep 60'
"""


@pytest.fixture
def dvc_workspace(tmp_path: Path) -> Path:
    """A git + DVC workspace with a chain (first -> second), an independent stage and test stages."""
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "b.txt").write_text("b\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def _run(root: Path, stage: str, timeout: float = 120.0):
    return run_stage(root, stage, force=False, timeout_seconds=timeout, stream=False)


def test_a_stage_runs_once_and_its_output_is_kept_in_a_log(dvc_workspace):
    first = _run(dvc_workspace, "first")
    assert first.ran and (dvc_workspace / "first.txt").read_text() == "a\n"
    assert "Running stage 'first'" in first.tail
    log = (dvc_workspace / STATE_DIR / LOG_DIR / "first.log").read_text()
    assert "Running stage 'first'" in log
    again = _run(dvc_workspace, "first")
    assert not again.ran and "didn't change" in again.tail


def test_streamed_output_reaches_stderr_line_by_line(dvc_workspace, capsys):
    run_stage(dvc_workspace, "first", force=False, timeout_seconds=120, stream=True)
    assert "Running stage 'first'" in capsys.readouterr().err


def test_the_stage_sees_the_environment_of_the_caller_at_call_time(dvc_workspace, monkeypatch):
    _run(dvc_workspace, "first")  # the forkserver starts here, before the variable exists
    monkeypatch.setenv("FACEOPS_PROBE", "set-later")
    result = _run(dvc_workspace, "probe")
    assert (dvc_workspace / "probe.txt").read_text() == "set-later\n"
    assert "probe says set-later" in result.tail


def test_a_failing_stage_raises_with_the_tail_of_its_output(dvc_workspace):
    with pytest.raises(StageFailed, match=r"(?s)failed \(exit \d+, [^)]*\).*about to fail"):
        _run(dvc_workspace, "broken")


def test_a_stage_past_its_timeout_is_killed_with_its_command(dvc_workspace):
    start = time.monotonic()
    with pytest.raises(StageFailed, match="timed out after 3 s"):
        _run(dvc_workspace, "slow", timeout=3)
    assert time.monotonic() - start < 30
    pid = int((dvc_workspace / "slow.pid").read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the stage's command outlived its timeout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")  # a zombie is dead


def test_plan_settles_only_stages_with_nothing_stale_upstream(dvc_workspace):
    for stage in ("first", "second", "apart", "probe"):
        _run(dvc_workspace, stage)
    plan = plan_run(dvc_workspace, ["second", "apart"])
    assert plan.order == ["first", "second", "apart"] and plan.stale == {}
    assert plan.settled == {"first", "second", "apart"}
    (dvc_workspace / "a.txt").write_text("changed\n")
    plan = plan_run(dvc_workspace, ["second", "apart"])
    assert set(plan.stale) == {"first"}  # second is not stale yet: its input changes only when first re-runs
    assert plan.settled == {"apart"}


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_api():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()


def _publish(root: Path, api_url: str) -> None:
    (root / STATE_DIR).mkdir(exist_ok=True)
    (root / STATE_DIR / SERVE_STATE).write_text(json.dumps({"pid": os.getpid(), "api_url": api_url}))


def test_a_running_serve_is_found_by_its_lock_and_state(tmp_path, health_api):
    assert served_api_url(tmp_path) is None
    _publish(tmp_path, health_api)
    (tmp_path / STATE_DIR / SERVE_LOCK).write_text("pid 1\n")
    assert served_api_url(tmp_path) is None, "a state file without a held lock was left by a killed serve"
    with open(tmp_path / STATE_DIR / SERVE_LOCK) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what faceops serve holds while it runs
        assert served_api_url(tmp_path) == health_api
        _publish(tmp_path, "http://127.0.0.1:9/api")  # nothing answers there
        assert served_api_url(tmp_path) is None
        (tmp_path / STATE_DIR / SERVE_STATE).write_text("not json")
        assert served_api_url(tmp_path) is None
