"""The Prefect server a run or `faceops serve` talks to: the given one, or one started here and tied to us.

A server started here is a *tethered* child (``faceops.processes.start_tethered``): it dies with the
process that started it, however that process ends. Prefect's own temporary server (what Prefect starts
when PREFECT_API_URL is unset) is a plain subprocess that a SIGKILLed run would leave running for ever,
holding a port and a SQLite database; so faceops never lets Prefect start one.

Two kinds: ``serve`` is ``prefect server start`` (UI optional, the background services that schedules and
automations need, a fixed port); ``run`` is Prefect's API alone on a free port (no UI, no services), as
Prefect's temporary server: enough to record one pipeline run. A ``run`` server starts in the background
(:func:`start_server`) from a forkserver that preloaded Prefect's server code, so its ~4 s of imports
overlap the run's own planning instead of coming before it.

Prefect reads its settings when first imported: callers set PREFECT_API_URL from what this yields before
importing Prefect.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from faceops.processes import TetheredProcess
from flows.workspace import STATE_DIR, api_healthy, child_processes

__all__ = ["SERVER_LOG", "ServerError", "StartingServer", "given_api_url", "prefect_server", "start_server"]

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


class StartingServer:
    """A tethered Prefect server child that starts in the background while the caller does other work.

    :meth:`ready` waits until it answers; :meth:`stop` stops it (or whatever is left of its start).
    """

    def __init__(self, root: Path, kind: Literal["serve", "run"], port: int, ui: bool) -> None:
        from faceops.processes import run_command

        prefect_home = Path(os.environ.get("PREFECT_HOME", root / STATE_DIR / "prefect"))
        prefect_home.mkdir(parents=True, exist_ok=True)
        self.prefect_home, self.log = prefect_home, prefect_home / SERVER_LOG
        self.api_url = f"http://127.0.0.1:{port}/api"
        env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
        if kind == "serve":
            target, args = run_command, (_serve_command(port, ui), str(self.log), env)
        else:
            target, args = _serve_api, (port, str(self.log))
        self._server: TetheredProcess | None = None
        self._failed: BaseException | None = None
        self._lock = threading.Lock()
        self._abandoned = False
        # Starting the child may wait for the forkserver to import what it preloads: do it on the side.
        self._starter = threading.Thread(target=self._start, args=(target, args, port), name="prefect-server-start",
                                         daemon=True)  # fmt: skip
        self._starter.start()

    def _start(self, target: Callable[..., None], args: tuple, port: int) -> None:
        from faceops.processes import start_tethered

        try:
            context = child_processes(server=target is _serve_api)
            server = start_tethered(context, target, args, name=f"prefect-server-{port}")
        except BaseException as err:  # noqa: BLE001 - re-raised by ready() in the caller's thread
            self._failed = err
            return
        with self._lock:
            self._server = server
            if self._abandoned:
                server.release()

    def ready(self) -> str:
        """The API URL once the server answers.

        Raises:
            ServerError: the child died or did not answer within :data:`SERVER_STARTUP_SECONDS`.
        """
        deadline = time.monotonic() + SERVER_STARTUP_SECONDS
        self._starter.join(SERVER_STARTUP_SECONDS)
        if self._failed is not None or self._server is None:
            raise ServerError(f"the Prefect server could not be started: {self._failed!r}")
        while not api_healthy(self.api_url, timeout=2.0):
            if self._server.exitcode is not None:
                raise ServerError(f"the Prefect server exited with code {self._server.exitcode} while starting; "
                                  f"see {self.log}")  # fmt: skip
            if time.monotonic() > deadline:
                raise ServerError(f"the Prefect server did not answer {self.api_url}/health within "
                                  f"{SERVER_STARTUP_SECONDS:.0f} s; see {self.log}")  # fmt: skip
            time.sleep(0.05)
        return self.api_url

    def stop(self) -> None:
        """Let this process's Prefect clients send what they queued, then stop the server (SIGTERM, then SIGKILL).

        A server still being started is abandoned, not waited for: the starter stops it once started, and
        being tethered it dies with this process anyway (a run with nothing to do returns at once).
        """
        from faceops.processes import kill_group

        with self._lock:
            self._abandoned = True
            if self._server is None:
                return
        _drain_clients()
        kill_group(self._server.pid, signal.SIGTERM)
        self._server.join(SERVER_STOP_SECONDS)
        self._server.release()


def start_server(root: Path, kind: Literal["serve", "run"], *, port: int | None = None, ui: bool = False) -> StartingServer:
    """Start a tethered Prefect server in the background (see :class:`StartingServer`).

    Raises:
        ServerError: ``port`` is taken.
    """
    if port is None:
        port = _free_port()
    elif _port_in_use(port):
        raise ServerError(f"port {port} on 127.0.0.1 is in use; pass --port, or if a Prefect server runs there set "
                          f"PREFECT_API_URL=http://127.0.0.1:{port}/api to use it")  # fmt: skip
    return StartingServer(root, kind, port, ui)


def given_api_url() -> str | None:
    """PREFECT_API_URL when set (without a trailing slash).

    Raises:
        ServerError: it is set but does not answer.
    """
    given = os.environ.get("PREFECT_API_URL")
    if not given:
        return None
    if not api_healthy(given):
        raise ServerError(f"PREFECT_API_URL={given} does not answer {given}/health; start that server or unset "
                          "PREFECT_API_URL to let faceops start one")  # fmt: skip
    return given.rstrip("/")


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
    given = given_api_url()
    if given:
        echo(f"using the Prefect server at {given}")
        yield given
        return
    server = start_server(root, kind, port=port, ui=ui)
    if kind == "serve":
        echo(f"starting the Prefect server (SQLite in {server.prefect_home}; log {server.log}) ...")
    try:
        yield server.ready()
    finally:
        server.stop()


def _serve_command(port: int, ui: bool) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
            "--analytics-off", "--ui" if ui else "--no-ui"]  # fmt: skip


def _serve_api(port: int, log: str) -> None:
    """Child side of a ``run`` server: Prefect's API alone (no UI, no background services), as Prefect's
    own temporary server, from the app factory the forkserver already imported (``child_processes``)."""
    import uvicorn
    from prefect.server.api.server import create_app

    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    uvicorn.run(create_app(ephemeral=True, final=True), host="127.0.0.1", port=port, log_level="error", lifespan="on")


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
