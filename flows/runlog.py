"""Logging that shows in Prefect's UI inside a flow or task run, and goes to a plain logger outside one.

Version and promotion code runs both from the CLI (no Prefect, must start fast) and inside the served
flows; these helpers never import Prefect unless it is already loaded.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["in_prefect_run", "run_logger"]


def in_prefect_run() -> bool:
    """Inside a Prefect flow or task run? Never imports Prefect itself (the CLI must stay fast)."""
    if "prefect" not in sys.modules:
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def run_logger(fallback: logging.Logger) -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run (the line shows in the UI), else ``fallback``."""
    if not in_prefect_run():
        return fallback
    from prefect import get_run_logger

    return get_run_logger()
