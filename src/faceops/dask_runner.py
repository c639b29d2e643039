"""Map a function over chunks of work on a Dask cluster (the ``runner: dask`` of ``align`` and ``embed``).

Why: one machine's process pool (``faceops.processes``, ``runner: processes``) is the default and the
cheapest way to use its cores; a Dask cluster lets several machines share one stage's work. The cluster
is either temporary (a ``LocalCluster`` of ``workers`` single-threaded processes on 127.0.0.1, closed
when the map ends) or an existing one reached by scheduler address (``dask scheduler`` / ``dask worker
tcp://...`` on each machine); its own dashboard shows the chunks, their progress and failures.

What a remote cluster needs: the same faceops version installed on every worker (the mapped function
travels by reference) and the input and output paths the same on every machine (a shared filesystem).

Plain dask.distributed, no Prefect: the library never imports Prefect or DVC (a Prefect task per chunk
cost ~0.3 s of worker CPU each, and a reachable Prefect API on every worker). Only this module imports
distributed, and only when a map runs, so the rest of the library imports without the ``dask`` extra.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

__all__ = ["check_dask_address", "check_dask_setup", "dask_map"]

T = TypeVar("T")
R = TypeVar("R")

_SCHEMES = ("tcp", "tls")
_INSTALL_HINT = "runner 'dask' needs dask.distributed: pip install -e '.[dask]' (the `dask` extra of faceops)"
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


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return distributed


def check_dask_setup(address: str | None) -> None:
    """Everything about a Dask run that can fail before any work: the address and the package.

    Raises:
        ValueError: a malformed ``address``.
        ImportError: dask.distributed is missing (the message names the ``dask`` extra).
    """
    if address is not None:
        check_dask_address(address)
    _distributed()


@contextmanager
def _client(address: str | None, workers: int) -> Iterator[Any]:
    """A Dask client of the scheduler at ``address``, or of a temporary local cluster of ``workers`` processes.

    The temporary cluster's processes stay in this process's group, so they go with a killed stage.
    """
    distributed = _distributed()
    if address is not None:
        with distributed.Client(address) as client:
            yield client
        return
    # One thread per process: the mapped work is CPU-bound Python/OpenCV, processes give the parallelism.
    # No dashboard: it would listen on a fixed port (8787) that a second run would fight over.
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:  # fmt: skip
        yield client


def _chunk_size(n_items: int, slots: int, max_chunk: int) -> int:
    """Items per chunk: ``_CHUNKS_PER_SLOT`` chunks per worker thread, at most ``max_chunk`` items each."""
    return max(1, min(max_chunk, math.ceil(n_items / (_CHUNKS_PER_SLOT * max(slots, 1)))))


def _chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _run_chunk(work: Callable[[], list[R]], size: int) -> list[R]:
    """The Dask task: one chunk's ``work``, checked to give one result per item (order is by position)."""
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
        max_chunk: most items per Dask task; large enough that a task's overhead is a small part of its work.
        workers: processes of the temporary local cluster; ignored with ``address``.
        address: ``tcp://host:port`` or ``tls://host:port`` of a running Dask scheduler, or None for a
            temporary local cluster.

    Raises:
        ValueError: bad ``max_chunk``, ``workers`` or ``address``.
        ImportError: dask.distributed is missing (the message names the ``dask`` extra).
        Exception: whatever ``fn`` raised on a worker.
    """
    if max_chunk < 1 or workers < 1:
        raise ValueError(f"max_chunk and workers must be >= 1, got {max_chunk} and {workers}")
    check_dask_setup(address)  # also for no items: a setup that cannot work fails every time, not by chance
    if not items:
        return iter(())
    return _flatten(_map_chunks(fn, items, max_chunk, address, workers))


def _flatten(chunk_results: Iterator[list[R]]) -> Iterator[R]:
    for results in chunk_results:
        yield from results


def _map_chunks(
    fn: Callable[[list[T]], list[R]], items: Sequence[T], max_chunk: int, address: str | None, workers: int
) -> Iterator[list[R]]:
    """Each chunk's results, in order, while the cluster works on the later chunks.

    A chunk reaches its task inside a ``functools.partial``: Dask walks a task's list, tuple and dict
    arguments item by item (looking for futures) and would rebuild named tuples as plain tuples.
    """
    with _client(address, workers) as client:
        slots = sum(client.nthreads().values())
        size = _chunk_size(len(items), slots, max_chunk)
        futures = deque(client.submit(_run_chunk, functools.partial(fn, chunk), len(chunk), pure=False)
                        for chunk in _chunks(items, size))  # fmt: skip
        while futures:
            yield futures.popleft().result()  # popped: Dask frees a chunk's results once they are read
