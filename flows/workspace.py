"""The workspace a flow or the CLI acts on: its root, environment, lock, DVC graph and stage runs.

Nothing here imports Prefect, so the fast paths (`faceops status`, a no-op `faceops run`) never pay a
Prefect server start. DVC is asked through its Python API for the graph and status (fast, in-process) and
through its CLI for running stages (one subprocess per stage, exactly what a user would type).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATE_DIR = ".faceops"
LOCK_FILE = "run.lock"

#: Settings that keep Prefect offline, quiet and inside the workspace (tools-and-peers.md 1.5, env checks 4).
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    "PREFECT_LOGGING_LEVEL": "INFO",
}


class WorkspaceError(RuntimeError):
    """The workspace is not usable as asked (no dvc.yaml, busy, unknown stage)."""


class StageFailed(RuntimeError):
    """`dvc repro` of one stage exited non-zero; the message carries the tail of its output."""


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` that holds a dvc.yaml."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    raise WorkspaceError(f"no dvc.yaml in {here} or any parent: run faceops inside a faceops workspace")


def configure_environment(root: Path) -> None:
    """Set the process environment for DVC and Prefect before either is imported or spawned.

    Existing values win (a user's PREFECT_API_URL points the flows at a running server). The venv's
    bin directory goes first on PATH because dvc.yaml commands say ``python``.
    """
    os.environ.setdefault("PREFECT_HOME", str(root / STATE_DIR / "prefect"))
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ["DVC_NO_ANALYTICS"] = "1"
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


@contextmanager
def workspace_lock(root: Path, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the one-run-per-workspace lock (an fcntl lock, released by the OS even on SIGKILL).

    Raises:
        WorkspaceError: another run holds the lock and did not release it within ``wait_seconds``.
    """
    path = root / STATE_DIR / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise WorkspaceError(
                        f"another faceops run holds {path} ({holder}); wait for it to finish, "
                        "or set pipeline.lock_wait_seconds in params.yaml to queue behind it"
                    ) from None
                time.sleep(0.5)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_repo(root: Path):
    from dvc.repo import Repo

    return Repo(str(root))


def _stage_name(root: Path, stage) -> str:
    """``name`` for a stage of the root dvc.yaml, ``path/dvc.yaml:name`` for another dvc.yaml, and the
    ``.dvc`` file's path for a ``dvc add`` stage; paths relative to ``root``.

    Why not DVC's ``stage.addressing``: it is relative to the *current directory*, so a flow started
    elsewhere (``faceops run --root``, ``faceops serve``) would get ``../../ws/dvc.yaml:train`` and miss
    its per-stage params.
    """
    dvcfile = Path(stage.dvcfile.path).resolve()
    relative = dvcfile.relative_to(root.resolve()).as_posix()
    name = getattr(stage, "name", None)  # .dvc files (dvc add) hold one unnamed stage
    if name is None:
        return relative
    return name if relative == "dvc.yaml" else f"{relative}:{name}"


def stage_order(root: Path, targets: Sequence[str] = ()) -> list[str]:
    """Stage names in an order DVC can run them, from DVC's own graph (never a second list).

    Ties are broken by position in dvc.yaml. With ``targets``, only those stages and their upstream
    stages are returned (what ``dvc repro TARGET`` would consider).
    """
    import networkx as nx

    with _open_repo(root) as repo:
        stages = list(repo.index.stages)
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        names = {stage: _stage_name(root, stage) for stage in stages}
        position = {names[stage]: i for i, stage in enumerate(stages)}
        unknown = sorted(set(targets) - set(position))
        if unknown:
            raise WorkspaceError(f"unknown stage(s) {unknown}; dvc.yaml defines {sorted(position)}")
        keep = set(position)
        if targets:
            keep = set()
            for stage in stages:
                if names[stage] in targets:
                    keep |= {names[s] for s in nx.descendants(graph, stage)} | {names[stage]}
        order = nx.lexicographical_topological_sort(graph.reverse(), key=lambda s: position[names[s]])
        return [names[s] for s in order if names[s] in keep]


def sweep_staging(root: Path) -> list[Path]:
    """Remove staging folders that killed stages left beside their DVC outputs (call under the lock).

    A stage killed mid-write leaves ``.tmp-<out>-*`` beside its output; when DVC then finds the
    output intact nothing re-runs that stage, so the run sweeps them instead.
    """
    from faceops.io.atomic import remove_stale_staging

    with _open_repo(root) as repo:
        outs = [Path(out.fs_path) for stage in repo.index.stages for out in stage.outs]
    return [p for out in outs for p in remove_stale_staging(out)]


def stale_stages(root: Path, targets: Sequence[str] = ()) -> dict[str, list]:
    """What DVC says is out of date: ``{stage: [reasons...]}``; empty when everything is up to date."""
    with _open_repo(root) as repo:
        status = repo.status(targets=list(targets) or None, with_deps=True)
    stale: dict[str, list] = {}
    for key, reasons in status.items():
        stage = key.split(":")[-1]
        stale[stage] = reasons
    return stale


@dataclass(frozen=True)
class StageRun:
    stage: str
    ran: bool
    seconds: float
    tail: str


def run_stage(root: Path, stage: str, *, force: bool, timeout_seconds: float, stream: bool) -> StageRun:
    """Run ``dvc repro --single-item STAGE`` (DVC decides whether it is stale) and wait for it.

    The child runs in its own process group so a timeout kills the stage process too, not only dvc.

    Raises:
        StageFailed: non-zero exit or timeout; the message ends with the last lines of output.
    """
    cmd = [sys.executable, "-m", "dvc", "repro", "--single-item", stage] + (["--force"] if force else [])
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    watchdog = threading.Timer(timeout_seconds, os.killpg, args=(proc.pid, signal.SIGKILL))
    watchdog.start()
    tail: deque[str] = deque(maxlen=40)
    ran = False
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            ran = ran or line.startswith("Running stage")
            if stream:
                sys.stderr.write(line)
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:  # the flow was cancelled or interrupted: take the stage down with it
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    seconds = time.monotonic() - start
    if seconds >= timeout_seconds and proc.returncode != 0:
        raise StageFailed(f"stage {stage!r} timed out after {timeout_seconds:.0f} s\n" + "\n".join(tail))
    if proc.returncode != 0:
        raise StageFailed(f"stage {stage!r} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return StageRun(stage=stage, ran=ran, seconds=seconds, tail="\n".join(tail))


def collect_metrics(root: Path) -> dict[str, object]:
    """All DVC metrics of the workspace as one flat ``{file:key: value}`` dict."""
    with _open_repo(root) as repo:
        shown = repo.metrics.show()
    flat: dict[str, object] = {}
    for _rev, data in shown.items():
        for path, content in data.get("data", {}).items():
            for key, value in (content.get("data") or {}).items():
                flat[f"{Path(path).stem}/{key}"] = value
    return dict(sorted(flat.items()))

