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
#: Shared-locked by every process that writes the workspace for a run (DVC children, stage commands);
#: a new run takes it exclusively once, so it starts only when no process of an earlier run is left.
WRITERS_LOCK = "writers.lock"
#: Written before a stage's `dvc repro` starts and removed when it ended: {"stage", "lock": dvc.lock text}.
JOURNAL = "journal.json"
#: How long a new run waits for processes of a killed run to go (their lifeline kills them in milliseconds).
WRITERS_GRACE_SECONDS = 10.0

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
    """`dvc repro` of one stage exited non-zero; the message carries the tail of its output.

    ``transient``: whether running it again can help (see :func:`classify_failure`).
    """

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


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
            _wait_for_writers(root, max(0.0, deadline - time.monotonic()) + WRITERS_GRACE_SECONDS)
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_for_writers(root: Path, wait_seconds: float) -> None:
    """Return once no process of an earlier run writes the workspace (call holding the run lock).

    Every DVC child and stage command holds :data:`WRITERS_LOCK` shared for its whole life, so taking it
    exclusively proves they are gone, even when the run that started them died without cleaning up.

    Raises:
        WorkspaceError: some are still there after ``wait_seconds``; the message names their PIDs.
    """
    from faceops.processes import lock_holders

    path = root / STATE_DIR / WRITERS_LOCK
    deadline = time.monotonic() + wait_seconds
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pids = ", ".join(map(str, lock_holders(path))) or "unknown"
                    raise WorkspaceError(
                        f"processes of an earlier run still write this workspace (PID {pids}, holding {path}); "
                        "wait for them to finish or stop them, then run again"
                    ) from None
                time.sleep(0.1)


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

    ``stale`` maps a stage to DVC's reasons, plus faceops' own: ``{"incomplete outs": {listing: what is
    missing}}`` for an output whose own listing names files it lacks (see ``faceops.io.integrity``), and
    ``{"interrupted": ...}`` for the stage a killed run left mid-way. ``force`` holds the stages DVC
    itself calls up to date that must re-run anyway (incomplete outputs).

    ``settled`` stages are up to date and so is every stage upstream of them. Under the workspace lock
    nothing a run does can make them stale (only upstream stages write what they read), so the pipeline
    flow records them without starting ``dvc repro`` (~0.6 s each: sources' ``.dvc`` files, ``sample``).
    """

    order: list[str]
    stale: dict[str, list]
    settled: frozenset[str]
    force: frozenset[str] = frozenset()


def plan_run(root: Path, targets: Sequence[str] = ()) -> RunPlan:
    """DVC's status of the stages a run of ``targets`` (all stages when empty) would consider.

    Outside a run (no one holds the run lock) a journal left by a killed run names its interrupted stage.
    """
    import networkx as nx
    from dvc.repo import lock_repo

    from faceops.io.integrity import check_output

    interrupted = None if run_active(root) else interrupted_stage(root)
    prune_dvc_rwlock(root)
    with _open_repo(root) as repo, lock_repo(repo):  # what `dvc status` holds while it looks
        order, names = _ordered_stages(root, repo, targets)
        stale: dict[str, list] = {}
        force = set()
        for stage in order:
            name = names[stage]
            reasons = [r for entry in stage.status().values() for r in entry]
            incomplete = {os.path.relpath(p.listing, root): p.describe()
                          for out in stage.outs for p in check_output(Path(out.fs_path))}  # fmt: skip
            if incomplete:
                reasons.append({"incomplete outs": incomplete})
                force.add(name)
            if name == interrupted:
                reasons.append({"interrupted": "a killed run left this stage mid-way; the next run resets its "
                                "dvc.lock entry to before it and runs it again"})  # fmt: skip
            if reasons:
                stale[name] = reasons
        graph = repo.index.graph
        settled = frozenset(
            names[stage] for stage in order
            if not ({names[stage]} | {names[s] for s in nx.descendants(graph, stage)}) & stale.keys()
        )  # fmt: skip
    return RunPlan(order=[names[s] for s in order], stale=stale, settled=settled, force=frozenset(force))


def run_active(root: Path) -> bool:
    """Whether some run holds this workspace's run lock right now."""
    path = root / STATE_DIR / LOCK_FILE
    if not path.is_file():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def interrupted_stage(root: Path) -> str | None:
    """The stage whose ``dvc repro`` a run started and never saw end (the run was killed), if any."""
    try:
        return json.loads((root / STATE_DIR / JOURNAL).read_text())["stage"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recover(root: Path) -> list[str]:
    """Undo what a killed run left behind; what was done, in words (call holding the run lock).

    * The journal of the stage the killed run had in flight: ``dvc.lock`` is put back as it was before that
      stage started (DVC rewrites it in place, so a kill can leave it half-written); the stage then shows
      its changed outputs and runs again.
    * Temporary files and staging folders beside every DVC output whose writer is gone
      (``faceops.io.atomic.remove_stale_temporaries``).
    * DVC's read/write lock file when a kill left it unreadable (no DVC process is left: the run lock and
      :data:`WRITERS_LOCK` are held).
    """
    from faceops.io.atomic import remove_stale_temporaries

    done = []
    stage = _restore_journal(root)
    if stage is not None:
        done.append(f"stage {stage} was interrupted by a killed run: dvc.lock put back as before it, so it runs again")
    rwlock = root / ".dvc" / "tmp" / "rwlock"
    try:
        json.loads(rwlock.read_text())
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        rwlock.unlink(missing_ok=True)
        done.append(f"removed {rwlock.relative_to(root)}, left unreadable by a killed DVC process")
    prune_dvc_rwlock(root)
    with _open_repo(root) as repo:
        outs = sorted({Path(out.fs_path) for stage in repo.index.stages for out in stage.outs})
    for out in outs:
        done += [f"removed {p.relative_to(root)} left by an interrupted stage" for p in remove_stale_temporaries(out)]
    return done


def prune_dvc_rwlock(root: Path) -> list[int]:
    """Drop the entries of dead processes from DVC's read/write lock file; their PIDs.

    DVC drops the entries of processes that no longer exist, but counts a zombie as alive: a DVC
    process killed with its run stays a zombie until the system reaps it (up to a second or more in
    containers), and any DVC command in that window fails with "... is busy". A zombie holds nothing,
    so its entries go too. The file is edited under DVC's own guard (``rwlock.lock``, an ``flock``).
    """
    import psutil

    from faceops.io.atomic import atomic_write_text

    folder = root / ".dvc" / "tmp"
    if not (folder / "rwlock").is_file():
        return []
    with open(folder / "rwlock.lock", "a+") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            lock = json.loads((folder / "rwlock").read_text())
        except (OSError, ValueError):
            return []  # gone meanwhile, or unreadable: recover() deals with that under the run lock

        def alive(info: dict) -> bool:
            try:
                return psutil.Process(int(info["pid"])).status() != psutil.STATUS_ZOMBIE
            except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
                return False

        entries = [*lock.get("write", {}).values(), *(i for e in lock.get("read", {}).values() for i in e)]
        dead = {i.get("pid") for i in entries if not alive(i)}
        if dead:
            lock["write"] = {p: i for p, i in lock.get("write", {}).items() if alive(i)}
            lock["read"] = {p: kept for p, e in lock.get("read", {}).items() if (kept := [i for i in e if alive(i)])}
            atomic_write_text(folder / "rwlock", json.dumps(lock))
    return sorted(pid for pid in dead if isinstance(pid, int))


def _write_journal(root: Path, stage: str) -> None:
    from faceops.io.atomic import atomic_write_text

    lock = root / "dvc.lock"
    text = lock.read_text() if lock.is_file() else None
    atomic_write_text(root / STATE_DIR / JOURNAL, json.dumps({"stage": stage, "lock": text}) + "\n")


def _restore_journal(root: Path) -> str | None:
    """Put dvc.lock back as the journal recorded it and drop the journal; the journal's stage, if any."""
    from faceops.io.atomic import atomic_write_text

    journal = root / STATE_DIR / JOURNAL
    try:
        entry = json.loads(journal.read_text())
        stage, text = entry["stage"], entry["lock"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        journal.unlink(missing_ok=True)  # the journal itself was cut short: the stage had not started
        return None
    lock = root / "dvc.lock"
    if text is None:
        lock.unlink(missing_ok=True)
    elif not lock.is_file() or lock.read_text() != text:
        atomic_write_text(lock, text)
    journal.unlink()
    return stage


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
    environment, runs in the workspace and writes its output to ``.faceops/logs/<stage>.log``, which stays.

    The child is *tethered* (``faceops.processes.start_tethered``): it leads its own process group (DVC,
    the stage command, its workers), which is killed when this process dies however it dies, when the
    timeout passes, and after the child ends (nothing of a stage outlives its ``dvc repro``). A journal
    (:data:`JOURNAL`) records dvc.lock as it was before the stage; a stage that did not end cleanly gets it
    back, since DVC rewrites dvc.lock in place and a kill can cut that write short.

    Raises:
        StageFailed: non-zero exit or timeout; the message ends with the last lines of output, and
            ``transient`` says whether a retry can help.
    """
    from faceops.processes import kill_group, start_tethered

    argv = ["repro", "--single-item", stage] + (["--force"] if force else [])
    log = root / STATE_DIR / LOG_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', stage)}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    _write_journal(root, stage)
    start = time.monotonic()
    child = start_tethered(child_processes(), _dvc_cli, (argv, str(root), dict(os.environ), str(log)),
                           name=f"dvc-repro-{stage}")  # fmt: skip
    watchdog = threading.Timer(timeout_seconds, kill_group, args=(child.pid,))
    watchdog.start()
    tail: deque[str] = deque(maxlen=40)
    ran = False
    try:
        with open(log, "rb") as output:
            pending = b""
            while True:
                child.join(0.1)
                done = child.exitcode is not None
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
        child.release()  # kills what is left of its group: the flow was cancelled, or DVC itself was killed
    seconds = time.monotonic() - start
    if child.exitcode == 0:
        (root / STATE_DIR / JOURNAL).unlink(missing_ok=True)
        return StageRun(stage=stage, ran=ran, seconds=seconds, tail="\n".join(tail))
    _restore_journal(root)
    if seconds >= timeout_seconds:
        raise StageFailed(f"stage {stage!r} timed out after {timeout_seconds:.0f} s\n" + "\n".join(tail),
                          transient=True)  # fmt: skip
    transient, why = classify_failure(child.exitcode, list(tail))
    raise StageFailed(f"stage {stage!r} failed (exit {child.exitcode}, {why}):\n" + "\n".join(tail), transient=transient)


#: Exceptions a retry can cure: the machine or the workspace was busy, not the code wrong.
_TRANSIENT_ERRORS = ("LockError", "BlockingIOError", "ConnectionError", "ConnectionResetError", "TimeoutError",
                     "BrokenPipeError", "BrokenProcessPool", "InterruptedError", "MemoryError")  # fmt: skip


def classify_failure(exitcode: int | None, tail: Sequence[str]) -> tuple[bool, str]:
    """(transient, why) for a ``dvc repro`` that failed: can running it again help?

    Transient: a process killed by a signal (the stage, a worker, DVC), DVC's lock held by someone else,
    an I/O error of the machine (EIO), and the exception types in :data:`_TRANSIENT_ERRORS`. Anything else
    (a traceback of ValueError, TypeError, a bad param) is a bug or bad input: retrying would only repeat it.
    """
    text = "\n".join(tail)
    if exitcode is not None and exitcode < 0:
        return True, f"DVC was killed by signal {-exitcode}"
    killed = re.search(r"exited with (-\d+|13[0-9]|14[0-9])\b", text)
    if killed:
        return True, f"the stage command was killed (status {killed.group(1)})"
    if "is busy" in text or "Unable to acquire lock" in text:
        return True, "DVC's lock was held by another process"
    if "[Errno 5]" in text:
        return True, "an I/O error"
    raised = re.findall(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception|Exit|Interrupt|Pool))\b[:\s]", text, flags=re.M)
    if raised:
        last = raised[-1]
        return last in _TRANSIENT_ERRORS, f"{last} raised"
    return False, "see the output below"


def child_processes(server: bool = False):
    """The forkserver context every child of a run comes from (DVC's CLI and reproduce code preloaded).

    ``server``: preload Prefect's server code too, for a run that starts its own Prefect server
    (``flows.prefect_server``): the forkserver imports it (~4 s) while the run plans, and the server child
    then starts in about a second. The preload list is fixed when the forkserver starts, by whoever asks
    first in this process: the run asks for the server first when it needs one.
    """
    from faceops.processes import forkserver_context

    modules = ["dvc.cli", "dvc.repo", "dvc.repo.reproduce", "dvc.commands.repro", __name__]
    if server:
        modules += ["prefect.server.api.server", "flows.prefect_server"]
    return forkserver_context(modules)


def _dvc_cli(argv: list[str], cwd: str, env: dict[str, str], log: str) -> None:
    """Child side of :func:`run_stage`: become ``dvc ARGV`` typed in ``cwd`` with ``env``, output into ``log``.

    It holds :data:`WRITERS_LOCK` shared for its whole life, and so does the stage command (told through
    ``stages._common.WRITERS_LOCK_ENV``), so no later run starts while either still writes.
    """
    from faceops.processes import hold_shared_lock
    from stages._common import WRITERS_LOCK_ENV

    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    os.environ[WRITERS_LOCK_ENV] = str(Path(cwd) / STATE_DIR / WRITERS_LOCK)  # the stage command holds it too
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    hold_shared_lock(Path(os.environ[WRITERS_LOCK_ENV]))
    from dvc.cli import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


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

