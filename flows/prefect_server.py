"""The Prefect server a run or `faceops serve` talks to: the given one, or one started here and tied to us.

A server started here is a *tethered* child (``faceops.processes.start_tethered``): it dies with the
process that started it, however that process ends. Prefect's own temporary server (what Prefect starts
when PREFECT_API_URL is unset) is a plain subprocess that a SIGKILLed run would leave running for ever,
holding a port and a SQLite database; so faceops never lets Prefect start one.

Two kinds of ``prefect server start``: ``serve`` (UI optional, the background services that schedules and
automations need, a fixed port) and ``run`` (the API alone, ``--no-services``, on a free port, as Prefect's
temporary server: enough to record one pipeline run).

Prefect reads its settings when first imported: callers set PREFECT_API_URL from what this yields before
importing Prefect.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from flows.workspace import STATE_DIR, api_healthy, child_processes

__all__ = ["ServerError", "SERVER_LOG", "prefect_server"]

SERVER_LOG = "server.log"
#: A cold server start on a busy 2-core machine (migrations, UI build) takes tens of seconds.
SERVER_STARTUP_SECONDS = 180.0
#: Time the server gets to shut down on SIGTERM before it is killed.
SERVER_STOP_SECONDS = 30.0


class ServerError(RuntimeError):
    """The Prefect server cannot be reached or started; the message says why and what to do."""


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _command(kind: Literal["serve", "run"], port: int, ui: bool) -> list[str]:
    options = ["--ui" if ui else "--no-ui"] if kind == "serve" else ["--no-ui", "--no-services"]
    return [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
            "--analytics-off", *options]  # fmt: skip


@contextlib.contextmanager
def prefect_server(
    root: Path, kind: Literal["serve", "run"], *, port: int | None = None, ui: bool = False,
    echo: Callable[[str], None] = print,
) -> Iterator[str]:  # fmt: skip
    """Yield the API URL of a healthy Prefect server: PREFECT_API_URL's, or a tethered child started here.

    Args:
        root: the workspace (the server's SQLite database and log live in PREFECT_HOME, by default
            ``.faceops/prefect``).
        kind: ``serve`` (``prefect server start``) or ``run`` (the API alone, as Prefect's temporary server).
        port: for ``serve``; ``run`` takes a free port.
        ui: serve the UI (``serve`` only).

    Raises:
        ServerError: the given server does not answer, the port is taken, or the child server died or did
            not answer within :data:`SERVER_STARTUP_SECONDS` (the message points at its log).
    """
    from faceops.processes import kill_group, run_command, start_tethered

    given = os.environ.get("PREFECT_API_URL")
    if given:
        if not api_healthy(given):
            raise ServerError(f"PREFECT_API_URL={given} does not answer {given}/health; start that server or unset "
                              "PREFECT_API_URL to let faceops start one")  # fmt: skip
        echo(f"using the Prefect server at {given}")
        yield given.rstrip("/")
        return
    if port is None:
        port = _free_port()
    elif _port_in_use(port):
        raise ServerError(f"port {port} on 127.0.0.1 is in use; pass --port, or if a Prefect server runs there set "
                          f"PREFECT_API_URL=http://127.0.0.1:{port}/api to use it")  # fmt: skip
    api_url = f"http://127.0.0.1:{port}/api"
    prefect_home = Path(os.environ.get("PREFECT_HOME", root / STATE_DIR / "prefect"))
    prefect_home.mkdir(parents=True, exist_ok=True)
    log_path = prefect_home / SERVER_LOG
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    if kind == "serve":
        echo(f"starting the Prefect server (SQLite in {prefect_home}; log {log_path}) ...")
    server = start_tethered(child_processes(), run_command, (_command(kind, port, ui), str(log_path), env),
                            name=f"prefect-server-{port}")  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_STARTUP_SECONDS
        while not api_healthy(api_url, timeout=2.0):
            if server.exitcode is not None:
                raise ServerError(f"the Prefect server exited with code {server.exitcode} while starting; see {log_path}")
            if time.monotonic() > deadline:
                raise ServerError(f"the Prefect server did not answer {api_url}/health within "
                                  f"{SERVER_STARTUP_SECONDS:.0f} s; see {log_path}")  # fmt: skip
            time.sleep(0.1)
        yield api_url
    finally:
        _drain_clients()
        kill_group(server.pid, signal.SIGTERM)
        server.join(SERVER_STOP_SECONDS)
        server.release()



def _drain_clients() -> None:
    """Send what Prefect's background workers in this process queued (logs, events) while the server is up.

    Otherwise they try at interpreter exit, after the server stopped, and retry for a minute and more.
    """
    if "prefect.logging.handlers" in sys.modules:
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()
    if "prefect.events.worker" in sys.modules:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=5)
