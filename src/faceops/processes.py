"""Child processes: how many CPUs they may use, a preloaded forkserver, and children tied to their parent.

Why not ``fork``: it would copy the parent mid-flight (torch's and OpenCV's thread pools, Prefect's
threads, locks held by other threads) into the children. ``forkserver`` forks each child from a clean
single-threaded server that imported the given modules once, so a child starts with them loaded.

Each child re-runs the parent's main module (as under ``spawn``); preloading it too means the re-run
only defines names. The server lives as long as the parent, so later children do not pay its start
again. The preload list is process-wide (``multiprocessing.set_forkserver_preload``): it takes effect
only when the server starts, so the first caller in a process decides it and later ones only cost an
import in each child. Where ``forkserver`` does not exist (Windows), ``spawn``.

**Tethered children** (:func:`start_tethered`): a process that writes a workspace must not outlive the
run that started it, however that run dies (SIGKILL, an OOM kill, a closed terminal). A ``finally`` in the
parent cannot promise that, since SIGKILL skips it. So the child holds the read end of a pipe whose only
write end stays in the parent; the kernel closes that end when the parent dies, the child's watcher
thread reads end-of-file and SIGKILLs the child's whole process group (the child, and every command and
worker it started). Unlike ``PR_SET_PDEATHSIG`` this needs no platform call, does not fire when merely the
*thread* that started the child ends, and covers grandchildren that were exec'd by other programs.

**Process identities** (:func:`process_identity`): a PID plus the process's start time. A PID alone is
reused by the system; the pair names one process for ever, so "is the writer of this staging folder
still alive?" has a provable answer.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

__all__ = [
    "TetheredProcess",
    "available_cpus",
    "forkserver_context",
    "hold_shared_lock",
    "identity_alive",
    "kill_group",
    "lock_holders",
    "process_identity",
    "run_command",
    "start_tethered",
]


#: Handles of the locks held for the process's life (a dropped handle would close and release its lock).
_HELD_LOCKS: list[IO[str]] = []


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def forkserver_context(modules: Sequence[str]) -> multiprocessing.context.BaseContext:
    """A ``forkserver`` context whose server preloads ``modules`` and the main module (``spawn`` without it)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*modules, *_main_module()])
    return context


def _main_module() -> list[str]:
    """The main module's name when it was run by name (``python -m stages.align``), else nothing.

    A main module run from a path (a console script) is preloaded by multiprocessing itself when
    ``"__main__"`` is in the list; one run by name is not, so it is named here.
    """
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    if name and name != "__main__" and not name.endswith(".__main__"):
        return [name]
    return ["__main__"]


def process_identity(pid: int | None = None) -> str:
    """``"<pid>-<start time>"`` of a process (this one by default): a name no later process can reuse.

    Raises:
        ProcessLookupError: no process has that PID.
    """
    pid = os.getpid() if pid is None else pid
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        raise ProcessLookupError(pid) from None
    return f"{pid}-{started:.2f}"


def identity_alive(identity: str) -> bool:
    """Whether the process named by :func:`process_identity` still runs (a zombie counts as gone).

    Raises:
        ValueError: ``identity`` is not of the form ``<pid>-<start time>``.
    """
    pid, _, _ = identity.partition("-")
    if not pid.isdigit() or not _:
        raise ValueError(f"not a process identity: {identity!r}")
    try:
        alive = process_identity(int(pid)) == identity
        return alive and psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, psutil.NoSuchProcess):
        return False


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group has no process left.

    Safe after the group's leader exited: the system does not give a new process a PID that is still
    some live group's ID, so ``pgid`` names this group as long as any member lives.
    """
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def lock_holders(path: Path) -> list[int]:
    """PIDs holding an ``flock`` on ``path`` (from /proc/locks; empty where that file does not exist)."""
    try:
        inode = os.stat(path).st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    holders = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  READ  1234 08:01:5678 0 EOF" (blocked waiters carry a "->" field first)
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
            continue
        if fields[5].rsplit(":", 1)[-1] == str(inode) and fields[4].isdigit():
            holders.append(int(fields[4]))
    return sorted(set(holders))


@dataclass
class TetheredProcess:
    """A child started by :func:`start_tethered`: the group leader of everything it starts."""

    process: multiprocessing.process.BaseProcess
    lifeline: multiprocessing.connection.Connection

    @property
    def pid(self) -> int:
        """The child's PID, which is also its process group's ID."""
        return int(self.process.pid)

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def join(self, timeout: float | None = None) -> None:
        self.process.join(timeout)

    def release(self) -> None:
        """Kill whatever is left of the child's group and close the lifeline (call once it is done)."""
        kill_group(self.pid)
        self.process.join()
        self.lifeline.close()


def start_tethered(
    context: multiprocessing.context.BaseContext, target: Callable[..., Any], args: tuple = (), name: str | None = None
) -> TetheredProcess:
    """Start ``target(*args)`` in a child that leads its own process group and dies with this process.

    The child's whole group (it and every process it starts that stays in its group) is SIGKILLed as
    soon as this process is gone, however it ended. Call :meth:`TetheredProcess.release` when done.
    """
    lifeline_read, lifeline_write = context.Pipe(duplex=False)
    process = context.Process(target=_tethered_main, args=(lifeline_read, target, args), name=name)
    process.start()
    lifeline_read.close()  # the child holds its own copy; the parent keeps only the write end
    return TetheredProcess(process=process, lifeline=lifeline_write)


def _tethered_main(lifeline: multiprocessing.connection.Connection, target: Callable[..., Any], args: tuple) -> None:
    """Child side of :func:`start_tethered`: own group, watcher on the lifeline, then the work."""
    os.setsid()
    if lifeline.poll(0):  # end-of-file already: the parent died while this child was being forked
        os._exit(1)
    threading.Thread(target=_watch_lifeline, args=(lifeline,), name="faceops-lifeline", daemon=True).start()
    target(*args)


def _watch_lifeline(lifeline: multiprocessing.connection.Connection) -> None:
    """Block until the parent's end of the pipe closes, then take this process group down."""
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    os.killpg(0, signal.SIGKILL)


def run_command(cmd: Sequence[str], log: str, env: dict[str, str], cwd: str | None = None) -> None:
    """Run ``cmd`` (output appended to ``log``) and exit with its code: the target for a tethered command.

    The command stays in the caller's process group, so it dies with a tethered caller, and a SIGTERM
    sent to the group reaches it for a clean stop.
    """
    signal.signal(signal.SIGTERM, lambda *_: None)  # the group's SIGTERM is for the command; wait for it
    with open(log, "ab") as output:
        code = subprocess.call(list(cmd), stdout=output, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    sys.exit(code)


def hold_shared_lock(path: Path) -> None:
    """Take a shared ``flock`` on ``path`` (waiting while someone holds it exclusively) for this process's life.

    The lock goes when the process ends, however it ends; the system releases it, not a ``finally``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held until the process exits, on purpose
    fcntl.flock(handle, fcntl.LOCK_SH)
    _HELD_LOCKS.append(handle)
