"""The pipeline flow: one Prefect task per DVC stage, in the order DVC's graph gives.

The flow orchestrates and never computes: each task runs ``dvc repro --single-item <stage>``, so DVC
decides what is stale and keeps the cache; Prefect adds retries, timeouts, logs and a run artifact.
Call it through ``faceops run`` (which holds the workspace lock and skips Prefect when nothing is stale),
or directly: ``python -m flows.pipeline``.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE as NO_CACHE

from faceops.config.params import load_params
from flows.workspace import StageFailed, collect_metrics, plan_run, run_stage, stage_order


def _is_transient_failure(task, task_run, state) -> bool:  # noqa: ARG001 - Prefect's retry_condition_fn signature
    """Retry only what a retry can cure: a killed or timed-out stage, a held lock, an I/O error.

    A bug in a stage (a traceback of ValueError, a bad param) fails once, clearly, instead of N times
    (``flows.workspace.classify_failure``); so does a bug in the flow itself.
    """
    try:
        state.result()
    except StageFailed as failure:
        return failure.transient
    except Exception:  # noqa: BLE001 - any other exception is not a stage failure
        return False
    return False


@task(name="dvc-stage", retry_condition_fn=_is_transient_failure, cache_policy=NO_CACHE)
def dvc_stage(root: str, stage: str, force: bool, timeout_seconds: float, stream: bool, settled: bool = False) -> dict:
    """Run one DVC stage; return what happened (ran or skipped, seconds).

    A ``settled`` stage (up to date with all its upstream when the run began, see
    ``flows.workspace.RunPlan``) is recorded as up to date without starting DVC.
    """
    logger = get_run_logger()
    if settled:
        logger.info("stage %s was up to date, with every stage upstream of it, when the run began", stage)
        return {"stage": stage, "ran": False, "seconds": 0.0}
    result = run_stage(Path(root), stage, force=force, timeout_seconds=timeout_seconds, stream=stream)
    logger.info("stage %s %s in %.1f s", stage, "ran" if result.ran else "was up to date", result.seconds)
    if not stream:
        logger.info("stage %s output (tail):\n%s", stage, result.tail)
    return {"stage": stage, "ran": result.ran, "seconds": round(result.seconds, 2)}


def _markdown(runs: list[dict], metrics: dict[str, object]) -> str:
    lines = ["# faceops pipeline run", "", "| stage | ran | seconds |", "|---|---|---|"]
    lines += [f"| {r['stage']} | {'yes' if r['ran'] else 'up to date'} | {r['seconds']} |" for r in runs]
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"


@flow(name="faceops-pipeline")
def pipeline(
    root: str = ".", targets: list[str] | None = None, force: bool = False, stream: bool = False,
    settled: list[str] | None = None, rebuild: list[str] | None = None,
) -> list[dict]:  # fmt: skip
    """Run the DVC pipeline stage by stage.

    Args:
        root: workspace root (holds dvc.yaml and params.yaml).
        targets: stages to bring up to date, with their upstream stages; all stages when empty.
        force: re-run the selected stages even if DVC says they are up to date.
        stream: echo each stage's output live (the CLI sets it when attached to a terminal).
        settled: stages the caller found settled (``flows.workspace.plan_run``) under the workspace lock it
            still holds; DVC is not started for them. None: the flow asks DVC itself (unless ``force``).
        rebuild: stages to force although DVC calls them up to date (the plan's ``force``: their outputs
            are incomplete); with ``settled=None`` the flow's own plan decides.
    """
    workspace = Path(root).resolve()
    settings = load_params(workspace / "params.yaml").pipeline
    if force:
        order, skip, rebuild = stage_order(workspace, targets or ()), frozenset(), []
    elif settled is None:
        plan = plan_run(workspace, targets or ())
        order, skip, rebuild = plan.order, plan.settled, sorted(plan.force)
    else:
        order, skip = stage_order(workspace, targets or ()), frozenset(settled)
    runs = []
    for stage in order:
        configured = dvc_stage.with_options(
            name=f"dvc-repro-{stage}",
            retries=settings.stage_retries.get(stage, settings.retries),
            retry_delay_seconds=settings.retry_delay_seconds,
        )
        timeout = settings.stage_timeout_seconds.get(stage, settings.timeout_seconds)
        runs.append(configured(str(workspace), stage, force or stage in (rebuild or ()), timeout, stream, stage in skip))
    create_markdown_artifact(key="faceops-pipeline-run", markdown=_markdown(runs, collect_metrics(workspace)))
    return runs


if __name__ == "__main__":
    pipeline()
