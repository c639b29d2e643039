"""``faceops serve``: a local Prefect server, the workspace's deployments and the inbox watcher, in one command.

What runs, all stopped together on Ctrl-C or SIGTERM:

* the Prefect server (``prefect server start`` on 127.0.0.1, SQLite in ``.faceops/prefect/prefect.db``) as a
  child process that dies with serve however serve ends (flows/prefect_server.py); with PREFECT_API_URL set,
  that server is used instead and nothing is started;
* a runner serving three deployments named after the workspace (:func:`workspace_slug`):
  ``faceops-pipeline/<ws>`` (run on demand), ``faceops-new-data/<ws>`` (triggered by the inbox event) and
  ``faceops-retrain/<ws>`` (cron from ``ops.retrain``), one flow run at a time (flows/operations.py says why
  that, plus the workspace lock, is the queue);
* the inbox watcher thread (flows/inbox.py), which emits ``faceops.inbox.settled`` for each settled batch.

**Why an event and a DeploymentEventTrigger** rather than the watcher calling ``run_deployment``: the event
shows in the UI's event feed (source, file count), the trigger is an automation the UI lists and can pause,
and anything else that can reach the API (an uploader on another machine) can announce a batch the same
way. The flow takes files by their own mtime, so a lost or duplicated event costs nothing: the next event for
that source, or the watcher's first look after a restart, takes whatever settled.

**Why schedules survive a restart**: the SQLite database persists under .faceops/prefect; the runner is
told not to pause schedules on shutdown (Prefect's default does, PrefectHQ/prefect#16363); and every start
re-applies the deployments idempotently: same names, the cron schedule replaced by its fixed slug, the
trigger's automation deleted and recreated.

Prefect reads its settings when first imported, so Prefect is imported only after PREFECT_API_URL is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import signal
import threading
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path

from faceops.config.params import Params
from faceops.io.atomic import atomic_write_text
from flows.inbox import Snapshot, watch_inbox
from flows.prefect_server import ServerError, prefect_server
from flows.workspace import SERVE_LOCK, SERVE_STATE, STATE_DIR

__all__ = ["EVENT_SETTLED", "ServeError", "build_deployments", "serve_workspace", "workspace_slug"]

EVENT_SETTLED = "faceops.inbox.settled"
RETRAIN_SCHEDULE_SLUG = "faceops-retrain"
#: How often the runner asks for runs to start (Prefect's default, 10 s, would dominate a new-data latency).
RUNNER_POLL_SECONDS = 2.0


class ServeError(RuntimeError):
    """``faceops serve`` cannot start as asked; the message says why and what to do."""


def workspace_slug(root: Path) -> str:
    """Deployment name for a workspace: its folder name plus a hash of its path (unique on a shared server)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", root.name).strip("-") or "workspace"
    return f"{name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"


@contextlib.contextmanager
def _serve_lock(root: Path) -> Iterator[None]:
    """One ``faceops serve`` per workspace: a second watcher would announce every batch twice."""
    path = root / STATE_DIR / SERVE_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ServeError(f"faceops serve already runs for {root} ({holder}); stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _published(root: Path, api_url: str) -> Iterator[None]:
    """Tell this workspace's `faceops run` where the served API is (flows.workspace.served_api_url)."""
    state = root / STATE_DIR / SERVE_STATE
    atomic_write_text(state, json.dumps({"pid": os.getpid(), "api_url": api_url}) + "\n")
    try:
        yield
    finally:
        state.unlink(missing_ok=True)


@contextlib.contextmanager
def _server(root: Path, port: int, ui: bool, echo: Callable[[str], None]) -> Iterator[str]:
    """``flows.prefect_server.prefect_server`` of kind ``serve``, its errors as :class:`ServeError`."""
    try:
        with prefect_server(root, "serve", port=port, ui=ui, echo=echo) as api_url:
            yield api_url
    except ServerError as err:
        raise ServeError(str(err)) from None


def _emit_settled(root: Path, slug: str, source: str, batch: Snapshot, echo: Callable[[str], None]) -> None:
    """Announce a settled batch; raising makes the watcher offer it again on its next poll."""
    from prefect.events import emit_event

    event = emit_event(
        event=EVENT_SETTLED,
        resource={
            "prefect.resource.id": f"faceops.inbox.{slug}.{source}",
            "prefect.resource.name": f"{root.name}: inbox/{source}",
            "faceops.source": source,
            "faceops.workspace": str(root),
        },
        payload={"files": len(batch), "bytes": sum(sig.size for sig in batch.values())},
    )
    if event is None:
        raise ServeError("Prefect did not take the event (is PREFECT_API_URL reachable?)")
    echo(f"inbox/{source}: {len(batch)} file(s) settled; emitted {EVENT_SETTLED}")


def build_deployments(root: Path, params: Params) -> list:
    """The workspace's three runner deployments (see the module docstring); nothing is applied yet."""
    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from flows.operations import new_data, retrain
    from flows.pipeline import pipeline

    slug = workspace_slug(root)
    common = {"name": slug, "parameters": {"root": str(root)}, "tags": ["faceops"],
              "entrypoint_type": EntrypointType.MODULE_PATH}  # fmt: skip
    trigger = DeploymentEventTrigger(
        name=f"faceops-inbox-{slug}",
        description=f"a settled batch in {root / params.ops.inbox.path}/<source>/ runs faceops-new-data",
        expect={EVENT_SETTLED},
        match={"prefect.resource.id": f"faceops.inbox.{slug}.*"},
        parameters={"source": "{{ event.resource['faceops.source'] }}"},
    )
    cfg = params.ops.retrain
    try:
        zoneinfo.ZoneInfo(cfg.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ServeError(f"ops.retrain.timezone {cfg.timezone!r} in params.yaml is not a known time zone; "
                         "use an IANA name such as 'UTC' or 'Europe/Berlin'") from None  # fmt: skip
    try:
        schedule = Cron(cfg.cron, timezone=cfg.timezone, active=cfg.enabled, slug=RETRAIN_SCHEDULE_SLUG)
    except ValueError as err:  # pydantic's ValidationError is one: a field out of range, such as minute 61
        raise ServeError(f"ops.retrain.cron {cfg.cron!r} in params.yaml is not a valid cron schedule: {err}") from None
    return [
        pipeline.to_deployment(description="The DVC pipeline, stage by stage (what `faceops run` runs).", **common),
        new_data.to_deployment(description="Ingest a settled inbox batch as a new source version, then run.",
                               triggers=[trigger], **common),  # fmt: skip
        retrain.to_deployment(description="Force the train stage, run what follows, promote if better.",
                              schedules=[schedule], **common),  # fmt: skip
    ]


def _announce(echo: Callable[[str], None], api_url: str, ui: bool, slug: str, params: Params, inbox: Path) -> None:
    cfg = params.ops.retrain
    when = f"cron '{cfg.cron}' {cfg.timezone}" if cfg.enabled else "schedule off (ops.retrain.enabled)"
    echo(f"Prefect UI:  {api_url.removesuffix('/api') if ui else 'off (--no-ui)'}")
    echo(f"Prefect API: {api_url}")
    echo(f"deployments: faceops-pipeline/{slug}, faceops-new-data/{slug} (on {EVENT_SETTLED}), "
         f"faceops-retrain/{slug} ({when})")  # fmt: skip
    echo(f"inbox:       {inbox}/<source>/ (a batch settles after {params.ops.inbox.settle_seconds:g} s quiet)")
    echo("serving, one run at a time; stop with Ctrl-C")


def _raise_interrupt(signum: int, frame: object) -> None:  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def serve_workspace(root: Path, params: Params, *, port: int = 4200, ui: bool = True,
                    echo: Callable[[str], None] = print) -> None:  # fmt: skip
    """Run the server (or connect), apply and serve the deployments and watch the inbox until stopped.

    SIGTERM before the runner starts is turned into KeyboardInterrupt so the child server is still
    stopped; once the runner runs it handles SIGTERM itself (cancels in-flight runs, returns).

    Raises:
        ServeError: another serve holds the workspace, or the server cannot be started or reached.
    """
    root = root.resolve()
    os.chdir(root)  # flow runs inherit it: they run as if `faceops run` were typed in the workspace
    signal.signal(signal.SIGTERM, _raise_interrupt)
    inbox = root / params.ops.inbox.path
    slug = workspace_slug(root)
    connected = bool(os.environ.get("PREFECT_API_URL"))
    with _serve_lock(root), _server(root, port, ui, echo) as api_url, _published(root, api_url):
        os.environ["PREFECT_API_URL"] = api_url  # for Prefect below and every flow-run process
        os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "faceops")  # library log lines reach the UI
        from prefect.runner import Runner
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            runner = Runner(name=f"faceops-{slug}", limit=1, pause_on_shutdown=False, query_seconds=RUNNER_POLL_SECONDS)
            for deployment in build_deployments(root, params):
                runner.add_deployment(deployment)  # applies it: created, or updated in place
            if not inbox.exists():
                inbox.mkdir(parents=True)
                (inbox / ".gitignore").write_text("*\n")  # drops are data, not code: keep them out of git
            _announce(echo, api_url, ui or connected, slug, params, inbox)
            stop = threading.Event()
            watcher = threading.Thread(
                target=watch_inbox,
                args=(inbox, params.ops.inbox.settle_seconds, params.ops.inbox.poll_seconds,
                      lambda source, batch: _emit_settled(root, slug, source, batch, echo), stop),  # fmt: skip
                name="faceops-inbox-watcher",
                daemon=True,
            )
            watcher.start()
            try:
                asyncio.run(runner.start())
            except KeyboardInterrupt:
                pass  # Ctrl-C: the runner has cancelled its runs; stop the watcher and the server below
            finally:
                stop.set()
                watcher.join(timeout=params.ops.inbox.poll_seconds + 10)
    echo("faceops serve stopped")
