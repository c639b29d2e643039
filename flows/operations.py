"""Operations flows that ``faceops serve`` deploys: ingest an inbox batch (``new_data``) and retrain (``retrain``).

Both end like every served run: when ``ops.commit_versions`` is on, the changed pipeline files become a
version commit (flows/versioning.py) and the new model is tagged ``model@vN`` only if it beats the promoted
one (flows/promotion.py, which also writes the decision artifact).

**One run per workspace; a second trigger queues.** Two mechanisms, because runs come from two places:

1. ``faceops serve`` serves all deployments of a workspace from one runner limited to one flow run at a
   time. A run triggered while another is running stays *Scheduled* (the UI shows it, "Late" after a
   while) and starts when the slot frees, oldest first; nothing is refused or dropped.
2. Each flow holds the workspace lock (``.faceops/run.lock``, the lock ``faceops run`` takes) for its whole
   run and waits for it instead of failing. That covers what Prefect cannot see: a ``faceops run`` started in
   a shell, or a second server pointed at the same workspace. The wait is bounded by what the pipeline
   may take under its own timeouts and retries (:func:`queue_wait_seconds`), so a wedged holder fails the
   run with the holder's pid rather than hanging it forever.

Prefect's deployment concurrency limits (``ConcurrencyLimitConfig(limit=1, collision_strategy=ENQUEUE)``)
are not used: they are per deployment, so a new-data run and a retrain run would still overlap, which is
exactly the DVC lock corruption to avoid (parallel ``dvc repro`` in one workspace fails with "Unable to
acquire lock" or corrupts DVC's rwlock file: iterative/dvc#10465, #9805, #5795).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from faceops.config.params import Params, load_params
from faceops.config.pipeline import PipelineParams
from flows.inbox import settled_files, snapshot
from flows.monitoring import monitor_from_promoted, publish_monitor, should_retrain
from flows.pipeline import dvc_stage, pipeline
from flows.promotion import promote_if_better, train_from_promoted
from flows.report_page import record_run_times
from flows.sources import AddResult, add_files_to_source
from flows.versioning import record_version
from flows.workspace import plan_run, recover, stage_order, workspace_lock

__all__ = ["new_data", "queue_wait_seconds", "retrain"]


def queue_wait_seconds(workspace: Path, settings: PipelineParams) -> float:
    """How long a served run waits for the workspace lock: a whole pipeline run at its timeouts and retries.

    A holder that is legitimately working cannot take longer than that (each stage is killed at its
    timeout), so waiting longer would only hide a wedged process. ``pipeline.lock_wait_seconds`` raises it.
    """
    budget = sum(
        settings.stage_timeout_seconds.get(stage, settings.timeout_seconds)
        * (1 + settings.stage_retries.get(stage, settings.retries))
        for stage in stage_order(workspace)
    )
    return max(settings.lock_wait_seconds, budget)


@contextmanager
def _queued_lock(workspace: Path, params: Params) -> Iterator[None]:
    """Hold the workspace lock, waiting behind another run; then sweep what a killed stage left behind."""
    logger = get_run_logger()
    wait = queue_wait_seconds(workspace, params.pipeline)
    start = time.monotonic()
    with workspace_lock(workspace, wait):
        waited = time.monotonic() - start
        if waited >= 1.0:
            logger.info("waited %.0f s for the workspace lock (another run held it)", waited)
        for note in recover(workspace):
            logger.info(note)
        yield


def _run_stale(workspace: Path, targets: list[str] | None = None) -> list[dict]:
    """The pipeline flow for what DVC says is stale; nothing (and no Prefect subflow) when nothing is."""
    plan = plan_run(workspace, targets or ())
    if not plan.stale:
        return []
    runs = pipeline(str(workspace), targets or [], False, settled=sorted(plan.settled), rebuild=sorted(plan.force))
    record_run_times(workspace, runs)
    return runs


def _version_and_promote(workspace: Path, params: Params, reason: str) -> dict:
    """Commit the changed pipeline files as a version and tag the model if it beats the promoted one."""
    logger = get_run_logger()
    if not params.ops.commit_versions:
        logger.info("ops.commit_versions is off: outputs are not committed and nothing is promoted")
        return {"version": None, "promoted": None}
    version = record_version(workspace, reason)
    if version is None:
        logger.info("no pipeline file changed: no new version")
        return {"version": None, "promoted": None}
    decision = promote_if_better(workspace, params.ops.promotion)
    return {"version": version.number, "promoted": decision.new_tag}


def _batch_markdown(result: AddResult, folder: Path) -> str:
    lines = [f"# Inbox batch for source `{result.source}`" + (" (new source)" if result.created else ""), "",
             f"From `{folder}`: {len(result.added)} added, {len(result.duplicates)} duplicates (same bytes already "
             f"in the source), {len(result.refused)} left in the inbox.", "", "| file | outcome |", "|---|---|"]  # fmt: skip
    lines += [f"| {path} | added |" for path in result.added]
    lines += [f"| {path} | duplicate |" for path in result.duplicates]
    lines += [f"| {path} | left in the inbox: {reason} |" for path, reason in result.refused.items()]
    return "\n".join(lines) + "\n"


@flow(name="faceops-new-data")
def new_data(root: str, source: str) -> dict:
    """Ingest the settled files of ``<ops.inbox.path>/<source>/`` as a new version of that source, then run.

    The files are taken by their own mtime (settled for ``ops.inbox.settle_seconds``), so a run that was
    queued behind another takes everything that settled meanwhile, and a run with nothing left to take
    (an earlier run took it) ends without running the pipeline. The ``monitor`` stage judges the new photos
    against the promoted model (flows/monitoring.py); its verdict becomes the ``faceops-monitor`` artifact,
    and with ``ops.monitor.action: retrain`` a ``retrain`` recommendation starts the retrain flow.

    Args:
        root: workspace root.
        source: the inbox folder, i.e. the source name (new names become ``unlabeled`` sources).
    """
    workspace = Path(root).resolve()
    params = load_params(workspace / "params.yaml")
    logger = get_run_logger()
    folder = workspace / params.ops.inbox.path / source
    summary: dict = {"source": source, "added": 0, "duplicates": 0, "refused": 0, "stages_run": []}
    with _queued_lock(workspace, params):
        files = settled_files(snapshot(folder), params.ops.inbox.settle_seconds, time.time_ns())
        if not files:
            logger.info("nothing settled in %s (an earlier run may have taken it)", folder)
            return summary
        result = add_files_to_source(workspace, source, folder, files)
        logger.info("source %r%s: %d added, %d duplicates, %d left in the inbox", source,
                    " (new, format unlabeled)" if result.created else "", len(result.added),
                    len(result.duplicates), len(result.refused))  # fmt: skip
        for path, reason in result.refused.items():
            logger.warning("%s/%s stays in the inbox: %s", source, path, reason)
        create_markdown_artifact(key="faceops-new-data", markdown=_batch_markdown(result, folder))
        summary.update(added=len(result.added), duplicates=len(result.duplicates), refused=len(result.refused))
        tag = monitor_from_promoted(workspace)
        logger.info("monitor: new photos are judged against %s", tag or "the trained model (nothing promoted yet)")
        runs = _run_stale(workspace)
        summary["stages_run"] = [r["stage"] for r in runs if r["ran"]]
        verdict = publish_monitor(workspace)
        summary["monitor"] = verdict["recommendation"] if verdict else None
        reason = f"new data in source {source!r} (+{len(result.added)} files)"
        summary.update(_version_and_promote(workspace, params, reason))
    if should_retrain(verdict, params.ops.monitor.action):  # after the lock: the retrain flow takes it itself
        logger.info("the monitor recommends retraining and ops.monitor.action is 'retrain': starting the retrain flow")
        summary["retrain"] = retrain(root)
    return summary


def _forced(workspace: Path, settings: PipelineParams, stage: str) -> dict:
    """Re-run one stage even though DVC says it is up to date, with the pipeline's retries and timeout."""
    task = dvc_stage.with_options(
        name=f"dvc-repro-{stage}-forced",
        retries=settings.stage_retries.get(stage, settings.retries),
        retry_delay_seconds=settings.retry_delay_seconds,
    )
    run = task(str(workspace), stage, True, settings.stage_timeout_seconds.get(stage, settings.timeout_seconds), False)
    record_run_times(workspace, [run])
    return run


@flow(name="faceops-retrain")
def retrain(root: str, stage: str = "train") -> dict:
    """Retrain on schedule: bring the inputs of ``stage`` up to date, re-run it, then everything downstream.

    Upstream stages run only if stale (new data gets in); ``stage`` itself runs even if DVC calls it up to
    date; downstream stages then run because its outputs changed (or stay as they are when it reproduced
    the same bytes, which DVC decides). With ``ops.retrain.from_promoted``, ``train.init`` first moves to
    the newest promotion tag, so the run fine-tunes the promoted model.

    Args:
        root: workspace root.
        stage: the training stage to force (``train``).
    """
    workspace = Path(root).resolve()
    params = load_params(workspace / "params.yaml")
    with _queued_lock(workspace, params):
        if params.ops.retrain.from_promoted:
            tag = train_from_promoted(workspace)
            get_run_logger().info("train.init: %s", f"fine-tunes {tag}" if tag else "nothing promoted yet, unchanged")
        upstream = [s for s in stage_order(workspace, [stage]) if s != stage]
        runs = _run_stale(workspace, upstream) if upstream else []
        runs.append(_forced(workspace, params.pipeline, stage))
        runs += _run_stale(workspace)
        summary: dict = {"stages_run": [r["stage"] for r in runs if r["ran"]]}
        summary.update(_version_and_promote(workspace, params, f"scheduled retrain of {stage!r}"))
    return summary


if __name__ == "__main__":
    retrain(sys.argv[1] if len(sys.argv) > 1 else ".")
