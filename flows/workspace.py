"""The workspace a flow or the CLI acts on: its root, environment, lock, DVC graph and stage runs.

Nothing here imports Prefect, so the fast paths (`faceops status`, a no-op `faceops run`) never pay a
Prefect server start. DVC is asked through its Python API for the graph and status (fast, in-process) and
through its CLI for running stages (``dvc repro`` per stage in its own child process: what a user would type).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATE_DIR = ".faceops"
LOCK_FILE = "run.lock"
#: Held by `faceops serve` while it runs (one per workspace).
SERVE_LOCK = "serve.lock"
#: Written by `faceops serve` once its Prefect server answers: {"pid", "api_url"}.
SERVE_STATE = "serve.json"
#: Output of each stage's last `dvc repro` (one file per stage, replaced by the next run).
LOG_DIR = "logs"

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


def api_healthy(api_url: str, timeout: float = 5.0) -> bool:
    """Whether a Prefect API answers ``GET <api_url>/health``."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def served_api_url(root: Path) -> str | None:
    """The Prefect API of the `faceops serve` running for this workspace, when one runs and answers.

    Why: a `faceops run` typed while the workspace is served should show in that server's UI with the
    served runs, and not pay a temporary server's start and stop (~6 s, most of a small run's cost).
    A state file left by a killed serve is ignored: the serve lock is free then.
    """
    lock, state = root / STATE_DIR / SERVE_LOCK, root / STATE_DIR / SERVE_STATE
    if not (lock.is_file() and state.is_file()):
        return None
    with open(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: serve runs
        else:
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None
    try:
        api_url = json.loads(state.read_text()).get("api_url")
    except (OSError, ValueError, AttributeError):
        return None
    return api_url if isinstance(api_url, str) and api_healthy(api_url, timeout=2.0) else None


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


def _ordered_stages(root: Path, repo, targets: Sequence[str]) -> tuple[list, dict]:
    """(stage objects in run order, {stage: name}); with ``targets``, only those and their upstream stages.

    The order is DVC's graph, ties broken by position in dvc.yaml (see :func:`stage_order`).
    """
    import networkx as nx

    stages = list(repo.index.stages)
    graph = repo.index.graph  # edges point from a stage to the stages it depends on
    names = {stage: _stage_name(root, stage) for stage in stages}
    position = {names[stage]: i for i, stage in enumerate(stages)}
    unknown = sorted(set(targets) - set(position))
    if unknown:
        raise WorkspaceError(f"unknown stage(s) {unknown}; dvc.yaml defines {sorted(position)}")
    keep = set(stages)
    if targets:
        keep = set()
        for stage in stages:
            if names[stage] in targets:
                keep |= set(nx.descendants(graph, stage)) | {stage}
    order = nx.lexicographical_topological_sort(graph.reverse(), key=lambda s: position[names[s]])
    return [s for s in order if s in keep], names


def stage_order(root: Path, targets: Sequence[str] = ()) -> list[str]:
    """Stage names in an order DVC can run them, from DVC's own graph (never a second list).

    Ties are broken by position in dvc.yaml. With ``targets``, only those stages and their upstream
    stages are returned (what ``dvc repro TARGET`` would consider).
    """
    with _open_repo(root) as repo:
        order, names = _ordered_stages(root, repo, targets)
        return [names[s] for s in order]


@dataclass(frozen=True)
class RunPlan:
    """What DVC says before a run: the stages in run order, the stale ones and the settled ones.

    ``settled`` stages are up to date and so is every stage upstream of them. Under the workspace lock
    nothing a run does can make them stale (only upstream stages write what they read), so the pipeline
    flow records them without starting ``dvc repro`` (~0.6 s each: sources' ``.dvc`` files, ``sample``).
    """

    order: list[str]
    stale: dict[str, list]
    settled: frozenset[str]


def plan_run(root: Path, targets: Sequence[str] = ()) -> RunPlan:
    """DVC's status of the stages a run of ``targets`` (all stages when empty) would consider."""
    import networkx as nx
    from dvc.repo import lock_repo

    with _open_repo(root) as repo, lock_repo(repo):  # what `dvc status` holds while it looks
        order, names = _ordered_stages(root, repo, targets)
        stale = {names[stage]: reasons for stage in order for reasons in stage.status().values()}
        graph = repo.index.graph
        settled = frozenset(
            names[stage] for stage in order
            if not ({names[stage]} | {names[s] for s in nx.descendants(graph, stage)}) & stale.keys()
        )  # fmt: skip
    return RunPlan(order=[names[s] for s in order], stale=stale, settled=settled)


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
    return plan_run(root, targets).stale


@dataclass(frozen=True)
class StageRun:
    stage: str
    ran: bool
    seconds: float
    tail: str


def run_stage(root: Path, stage: str, *, force: bool, timeout_seconds: float, stream: bool) -> StageRun:
    """Run ``dvc repro --single-item STAGE`` (DVC decides whether it is stale) and wait for it.

    The command runs as DVC's own CLI (``dvc.cli.main``) in a child process forked from a server that
    has DVC imported (``faceops.processes``): what a user would type, minus the ~0.4 s of Python start
    and DVC import a fresh ``python -m dvc`` pays for every stage. The child gets this process's
    environment, runs in the workspace in its own process group (so a timeout kills the stage's process
    too, not only DVC) and writes its output to ``.faceops/logs/<stage>.log``, which stays there.

    Raises:
        StageFailed: non-zero exit or timeout; the message ends with the last lines of output.
    """
    argv = ["repro", "--single-item", stage] + (["--force"] if force else [])
    log = root / STATE_DIR / LOG_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', stage)}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    start = time.monotonic()
    proc = _dvc_processes().Process(target=_dvc_cli, args=(argv, str(root), dict(os.environ), str(log)),
                                    name=f"dvc-repro-{stage}")  # fmt: skip
    proc.start()
    watchdog = threading.Timer(timeout_seconds, _kill_group, args=(proc,))
    watchdog.start()
    tail: deque[str] = deque(maxlen=40)
    ran = False
    try:
        with open(log, "rb") as output:
            pending = b""
            while True:
                proc.join(0.1)
                done = proc.exitcode is not None
                pending += output.read()
                *lines, pending = pending.split(b"\n")
                if done and pending:
                    lines, pending = [*lines, pending], b""
                for line in (raw.decode("utf-8", errors="replace") for raw in lines):
                    tail.append(line)
                    ran = ran or line.startswith("Running stage")
                    if stream:
                        sys.stderr.write(line + "\n")
                if done:
                    break
    finally:
        watchdog.cancel()
        if proc.exitcode is None:  # the flow was cancelled or interrupted: take the stage down with it
            _kill_group(proc)
            proc.join()
    seconds = time.monotonic() - start
    if seconds >= timeout_seconds and proc.exitcode != 0:
        raise StageFailed(f"stage {stage!r} timed out after {timeout_seconds:.0f} s\n" + "\n".join(tail))
    if proc.exitcode != 0:
        raise StageFailed(f"stage {stage!r} failed (exit {proc.exitcode}):\n" + "\n".join(tail))
    return StageRun(stage=stage, ran=ran, seconds=seconds, tail="\n".join(tail))


def _dvc_processes():
    """The forkserver context the DVC children come from (DVC's CLI and reproduce code preloaded)."""
    from faceops.processes import forkserver_context

    return forkserver_context(["dvc.cli", "dvc.repo", "dvc.repo.reproduce", "dvc.commands.repro", __name__])


def _dvc_cli(argv: list[str], cwd: str, env: dict[str, str], log: str) -> None:
    """Child side of :func:`run_stage`: become ``dvc ARGV`` typed in ``cwd`` with ``env``, output into ``log``."""
    os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from dvc.cli import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def _kill_group(proc) -> None:
    """SIGKILL the child's process group (DVC and the stage command it started)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()  # not yet its own group leader, or already gone


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

