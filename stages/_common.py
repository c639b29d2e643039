"""What every stage module shares: argument parsing, params loading, progress bars, metrics files.

A stage does: parse paths -> load validated params -> call the library -> write outputs atomically ->
write metrics. Anything heavier belongs in ``faceops``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from faceops.config.core import ParamsError, Section, load_sections
from faceops.io.atomic import atomic_write_text
from faceops.processes import hold_shared_lock
from faceops.runtime import decisive_versions, pin_cpu_kernels

# With FACEOPS_CPU_KERNELS=avx2, torch, MKL and oneDNN run at one fixed CPU kernel level (AVX2) in every
# stage process, so a network trained on an AVX-512 CPU gets the same bytes as on an AVX2 one (opt-in: it
# costs ~24% CPU time in pretrain). Set here, before any stage imports torch; a value already in the
# environment wins (docs/ARCHITECTURE.md, "Reproducibility across machines").
pin_cpu_kernels()

console = Console(stderr=True)


#: Set by `faceops run` for the DVC commands it starts: the lock file that marks a process as a writer of
#: the workspace (held shared for the process's life; flows.workspace.WRITERS_LOCK says why).
WRITERS_LOCK_ENV = "FACEOPS_WRITERS_LOCK"


def parse_args(
    description: str, paths: Sequence[str], argv: Sequence[str] | None, path_lists: Sequence[str] = ()
) -> argparse.Namespace:
    """Parse ``--params`` plus the stage's path arguments (paths live in dvc.yaml, never in code).

    ``paths`` are required single paths; ``path_lists`` take zero or more paths each. Every stage starts
    here, so this is also where a stage started by a faceops run marks itself as a writer: no later run
    begins while it still runs, even if its own run was killed.
    """
    if os.environ.get(WRITERS_LOCK_ENV):
        hold_shared_lock(Path(os.environ[WRITERS_LOCK_ENV]))
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", type=Path, help="params file (default: params.yaml)")
    for name in paths:
        parser.add_argument(f"--{name}", required=True, type=Path)
    for name in path_lists:
        parser.add_argument(f"--{name}", nargs="*", default=[], type=Path)
    return parser.parse_args(argv)


def params_or_exit(path: Path, **sections: type[Section]) -> Any:
    """Load and validate the stage's ``sections`` of params (``align=AlignParams``); an invalid one ends
    the stage with the message naming the key.

    A stage names only the sections it reads, so it imports (and dvc.yaml lists) only their modules.
    """
    try:
        return load_sections(path, **sections)
    except (ParamsError, FileNotFoundError) as err:
        console.print(f"[red]{err}[/red]")
        sys.exit(2)


class _Rate(TextColumn):
    """Items per second, as the brief asks for every long step."""

    def __init__(self, unit: str) -> None:
        super().__init__("")
        self.unit = unit

    def render(self, task):  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return f"{speed:,.1f} {self.unit}/s" if speed else f"- {self.unit}/s"


@contextmanager
def progress_bar(description: str, total: int, unit: str = "files") -> Iterator[Callable[[int], None]]:
    """A rich progress bar (count, rate, elapsed, ETA); yields ``advance(n)``."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def write_metrics(path: Path, metrics: dict) -> None:
    """Write a flat metrics JSON atomically (sorted keys: stable bytes, clean ``dvc metrics diff``).

    Every stage's metrics also record the versions that decide output bytes (``env/opencv``,
    ``env/libjpeg_turbo``, ``env/numpy``, ``env/torch``, ...: :func:`faceops.runtime.decisive_versions`),
    so a changed output hash in dvc.lock can be traced to a library upgrade.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = {**metrics, **{f"env/{name}": value for name, value in decisive_versions().items()}}
    atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def print_counts(title: str, counts: dict[str, int]) -> None:
    """Print one line per non-zero count, e.g. accepted images and quarantine reasons."""
    console.print(f"[bold]{title}[/bold]")
    for key in sorted(k for k, v in counts.items() if v):
        console.print(f"  {key:<24} {counts[key]:>8}")
