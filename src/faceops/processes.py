"""Child processes: how many CPUs they may use, and a forkserver preloaded with what they import.

Why not ``fork``: it would copy the parent mid-flight (torch's and OpenCV's thread pools, Prefect's
threads, locks held by other threads) into the children. ``forkserver`` forks each child from a clean
single-threaded server that imported the given modules once, so a child starts with them loaded.

Each child re-runs the parent's main module (as under ``spawn``); preloading it too means the re-run
only defines names. The server lives as long as the parent, so later children do not pay its start
again. The preload list is process-wide (``multiprocessing.set_forkserver_preload``): it takes effect
only when the server starts, so the first caller in a process decides it and later ones only cost an
import in each child. Where ``forkserver`` does not exist (Windows), ``spawn``.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import sys
from collections.abc import Sequence

__all__ = ["available_cpus", "forkserver_context"]


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
