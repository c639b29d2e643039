"""Map a function over chunks of work on a Dask cluster, one Prefect task run per chunk (``runner: dask``).

Why: one machine's process pool is the default and the cheapest way to use its cores; a Dask cluster
lets several machines share one stage's work. Each chunk runs as a Prefect task through
``prefect_dask.DaskTaskRunner``, so the chunks show up, with their logs and failures, under one flow
run in the Prefect UI next to the pipeline's runs. The cluster is either temporary (a ``LocalCluster``
of ``workers`` single-threaded processes on 127.0.0.1, closed when the map ends) or an existing one
reached by scheduler address (``dask scheduler`` / ``dask worker tcp://...`` on each machine).

What a remote cluster needs: the same faceops version installed on every worker (the mapped function
travels by reference), the input and output paths the same on every machine (a shared filesystem),
and a Prefect API every worker can reach (``PREFECT_API_URL``), since each worker reports its task runs.

Cost: a Prefect task run on a Dask worker costs about 0.3 s of worker CPU (measured on a 2-core VM:
Prefect rebuilds its settings and API client for every task), on top of a fixed start-up (a temporary
Prefect server when ``PREFECT_API_URL`` is unset, the cluster, Prefect's first task in each worker:
~20 s in bench/align_dask.py). Hence chunks of many items, and the process pool stays the default.

Only this module imports prefect, prefect_dask and distributed, and only when a map runs, so the rest
of the library stays pure and importable without the ``dask`` extra.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

__all__ = ["check_dask_address", "check_dask_setup", "dask_map"]

T = TypeVar("T")
R = TypeVar("R")

_SCHEMES = ("tcp", "tls")
_INSTALL_HINT = "runner 'dask' needs prefect-dask: pip install -e '.[dask]' (the `dask` extra of faceops)"
#: Chunks per worker thread when there are enough items: the last chunks then leave a worker idle briefly.
_CHUNKS_PER_SLOT = 4


def check_dask_address(address: str) -> str:
    """``address`` if it names a Dask scheduler as ``tcp://host:port`` or ``tls://host:port``.

    Checked before any work starts, so a typo fails at once instead of after a connection timeout.

    Raises:
        ValueError: anything else (other scheme, no host, no or bad port, a path or credentials).
    """
    problem = f"dask_address must look like tcp://host:8786 or tls://host:8786, got {address!r}"
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        raise ValueError(problem) from None
    if parts.scheme not in _SCHEMES or not parts.hostname or port is None or parts.username is not None:
        raise ValueError(problem)
    if parts.path or parts.query or parts.fragment:
        raise ValueError(problem)
    return address


def _is_loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


def _check_workers_reach_api(address: str) -> None:
    """Refuse a remote cluster when its workers could not report to the Prefect API.

    Without ``PREFECT_API_URL`` (or with a loopback one) the run reports to a server on this machine's
    127.0.0.1, which workers on other machines cannot reach.
    """
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if not _is_loopback(urlsplit(address).hostname) and (not api_url or _is_loopback(urlsplit(api_url).hostname)):
        raise ValueError(
            f"dask_address {address} runs tasks on other machines, and they report to the Prefect API: set "
            f"PREFECT_API_URL to a Prefect server every machine can reach (now {api_url or 'unset'})"
        )


def _task_runner_class() -> Any:
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return DaskTaskRunner


def check_dask_setup(address: str | None) -> None:
    """Everything about a Dask run that can fail before any work: the address, the package, the API.

    Raises:
        ValueError: a malformed ``address``; a remote one without a reachable ``PREFECT_API_URL``.
        ImportError: prefect-dask is missing (the message names the ``dask`` extra).
    """
    if address is not None:
        check_dask_address(address)
    _task_runner_class()
    if address is not None:
        _check_workers_reach_api(address)


def _task_runner(address: str | None, workers: int) -> Any:
    """A ``DaskTaskRunner`` for ``address``, or for a temporary local cluster of ``workers`` processes."""
    DaskTaskRunner = _task_runner_class()
    if address is not None:
        return DaskTaskRunner(address=address)
    # One thread per process: the mapped work is CPU-bound Python/OpenCV, processes give the parallelism.
    # No dashboard: it would listen on a fixed port (8787) that a second run would fight over.
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    )


def _chunk_size(n_items: int, slots: int, max_chunk: int) -> int:
    """Items per chunk: ``_CHUNKS_PER_SLOT`` chunks per worker thread, at most ``max_chunk`` items each."""
    return max(1, min(max_chunk, math.ceil(n_items / (_CHUNKS_PER_SLOT * max(slots, 1)))))


def _chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _run_chunk(work: Callable[[], list[R]], size: int) -> list[R]:
    """The Prefect task: one chunk's ``work``, checked to give one result per item (order is by position)."""
    results = work()
    if len(results) != size:
        raise RuntimeError(f"{work!r} returned {len(results)} results for a chunk of {size} items")
    return results


def dask_map(
    fn: Callable[[list[T]], list[R]],
    items: Sequence[T],
    *,
    max_chunk: int,
    workers: int = 1,
    address: str | None = None,
    name: str = "faceops-dask-map",
) -> Iterator[R]:
    """Yield ``fn``'s results for ``items``, in item order, computed chunk by chunk on a Dask cluster.

    The chunk size follows the cluster's worker threads (4 chunks each, at most ``max_chunk`` items).
    All chunks are submitted at once (Dask balances them over the workers); results come back in order
    as soon as every earlier chunk is done, so a caller can report progress. Nothing starts for no items.

    Args:
        fn: maps a list of items to a list of results of the same length. It must be picklable by
            reference (a module-level function, or a ``functools.partial`` of one with picklable
            arguments), since Dask ships it to worker processes, possibly on other machines.
        items: the work; each item must be picklable.
        max_chunk: most items per Prefect task; large enough that the task's overhead (~0.3 s) is
            a small part of a chunk's work.
        workers: processes of the temporary local cluster; ignored with ``address``.
        address: ``tcp://host:port`` or ``tls://host:port`` of a running Dask scheduler, or None for a
            temporary local cluster.
        name: the Prefect flow's name (the task is ``<name>-chunk``).

    Raises:
        ValueError: bad ``max_chunk``, ``workers`` or ``address``; a remote ``address`` without a
            reachable ``PREFECT_API_URL``.
        ImportError: prefect-dask is missing (the message names the ``dask`` extra).
        Exception: whatever ``fn`` raised on a worker.
    """
    if max_chunk < 1 or workers < 1:
        raise ValueError(f"max_chunk and workers must be >= 1, got {max_chunk} and {workers}")
    check_dask_setup(address)  # also for no items: a setup that cannot work fails every time, not by chance
    if not items:
        return iter(())
    return _flatten(_chunk_flow(fn, items, max_chunk, _task_runner(address, workers), name))


def _flatten(chunk_results: Iterator[list[R]]) -> Iterator[R]:
    for results in chunk_results:
        yield from results


def _chunk_flow(
    fn: Callable[[list[T]], list[R]], items: Sequence[T], max_chunk: int, runner: Any, name: str
) -> Iterator[list[R]]:
    """A generator flow yielding each chunk's results in order.

    The items are no flow parameters (Prefect would serialise those for the API), and a chunk reaches
    its task inside a ``functools.partial``: Prefect and Dask walk a task's list, tuple and dict
    arguments item by item (looking for futures), and Dask rebuilds ``prefect.quote``, a named tuple,
    as a plain tuple. The workers get this run's API URL through the task context: when Prefect started
    a temporary server for the run, each worker would otherwise start its own (seconds each, and their
    task runs would be recorded apart).
    """
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.context import get_run_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    chunk_task = task(_run_chunk, name=f"{name}-chunk", cache_policy=NO_CACHE, persist_result=False)

    @flow(name=name, task_runner=runner, persist_result=False)
    def run_chunks() -> Iterator[list[R]]:
        context = get_run_context()
        slots = sum(context.task_runner.client.nthreads().values())  # starts a local cluster
        size = _chunk_size(len(items), slots, max_chunk)
        with temporary_settings(updates={PREFECT_API_URL: str(context.client.api_url).rstrip("/")}):
            chunks = _chunks(items, size)
            futures = deque(chunk_task.submit(functools.partial(fn, chunk), len(chunk)) for chunk in chunks)
        while futures:
            yield futures.popleft().result()  # popped: Dask frees a chunk's results once they are read

    return run_chunks()
