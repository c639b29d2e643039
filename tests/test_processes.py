"""Tethered children, process identities and lock holders (faceops.processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from faceops.processes import (
    hold_shared_lock,
    identity_alive,
    kill_group,
    lock_holders,
    process_identity,
)

# A parent that starts a tethered child; the child starts a grandchild (`sleep`) in its group and both
# report their PIDs, then everything waits to be killed.
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from faceops.processes import forkserver_context, start_tethered

    def child(report):
        grandchild = subprocess.Popen(["sleep", "300"])
        with open(report, "w") as out:
            out.write(f"{__import__('os').getpid()} {grandchild.pid}\\n")
        time.sleep(300)

    if __name__ == "__main__":
        tethered = start_tethered(forkserver_context([]), child, (sys.argv[1],))
        time.sleep(300)
    """
)


def _gone(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGHUP"])
def test_a_tethered_child_and_its_group_die_with_the_parent(tmp_path: Path, how: str) -> None:
    script, report = tmp_path / "parent.py", tmp_path / "pids"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(report)], start_new_session=True)
    deadline = time.monotonic() + 60
    while not (report.is_file() and report.read_text().endswith("\n")):
        assert time.monotonic() < deadline and parent.poll() is None, "the tethered child never started"
        time.sleep(0.05)
    child, grandchild = map(int, report.read_text().split())
    assert psutil.Process(child).ppid() != parent.pid  # forked by the forkserver, not by the parent
    os.kill(parent.pid, getattr(signal, how))  # only the top process, as an OOM killer would
    parent.wait(10)
    assert _gone([child, grandchild], 5.0), "the tethered child or its grandchild outlived the parent"


def test_process_identity_names_one_process_for_ever() -> None:
    me = process_identity()
    assert me.startswith(f"{os.getpid()}-") and identity_alive(me)
    proc = subprocess.Popen(["sleep", "30"])
    theirs = process_identity(proc.pid)
    assert identity_alive(theirs)
    proc.kill()
    proc.wait()
    assert not identity_alive(theirs)
    pid, started = me.split("-")
    assert not identity_alive(f"{pid}-{float(started) - 1:.2f}")  # same PID, another start time: not us
    with pytest.raises(ValueError, match="not a process identity"):
        identity_alive("nonsense")


def test_lock_holders_name_the_processes_holding_a_shared_lock(tmp_path: Path) -> None:
    lock = tmp_path / "writers.lock"
    code = f"from faceops.processes import hold_shared_lock; from pathlib import Path; import time; " \
           f"hold_shared_lock(Path({str(lock)!r})); print('held', flush=True); time.sleep(60)"  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert holder.pid in lock_holders(lock)
        hold_shared_lock(lock)  # shared: a second holder is let in at once
        assert {holder.pid, os.getpid()} <= set(lock_holders(lock))
    finally:
        holder.kill()
        holder.wait()
    assert holder.pid not in lock_holders(lock)


def test_kill_group_says_when_no_process_is_left() -> None:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    assert kill_group(proc.pid)
    proc.wait()
    assert not kill_group(proc.pid)
