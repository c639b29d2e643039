"""Per-step training metrics in the files ``dvc plots`` and ``dvc metrics`` read (dvclive's layout).

A run's folder holds ``plots/metrics/<key>.tsv`` per logged key (a ``step<TAB><name>`` header, then one
``<step><TAB><value>`` row per logged step; ``<name>`` is the key's last ``/`` part, as dvclive writes it)
and ``metrics.json``, the latest value of every key nested by ``/`` plus ``step`` (indent 4). dvc.yaml's
``plots:`` entries point at ``<folder>/plots/metrics`` with ``x: step``.

Why not dvclive itself: its ``Live`` opens the DVC repository and asks git for HEAD when it starts, which
raises in a workspace whose git repository has no commit yet, and the pipeline (dvc.yaml) already owns
experiments and plots; writing the two files here is all a training stage needs. The bytes are those
dvclive 3.49 writes for the same calls (``Live(dvcyaml=None)`` with ``log_metric`` per key and
``make_summary`` per step), so existing plots and ``dvc plots diff`` against older runs keep working.

The files are appended to while a run trains (so ``dvc plots show`` can watch it), not written
atomically: the folder is a ``cache: false`` output that a re-run replaces whole.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from faceops.io.atomic import atomic_write_text

__all__ = ["METRICS_JSON", "PLOTS_DIR", "StepLog"]

#: Latest value of every key (``dvc metrics``), inside the log folder.
METRICS_JSON = "metrics.json"
#: One ``.tsv`` per key below it (``dvc plots``), inside the log folder.
PLOTS_DIR = "plots/metrics"


class StepLog:
    """Writes one run's step metrics to ``folder`` (emptied first).

    Args:
        folder: the log folder (created; whatever it held is removed: a log describes one run).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.summary: dict[str, Any] = {}

    def log(self, step: int, values: dict[str, float]) -> None:
        """Append ``values`` (``key -> number``) at ``step`` to each key's plot and rewrite ``metrics.json``.

        The signature of ``faceops.train.fit``'s ``log``. A NaN or infinite value is written as text
        (``nan``, ``inf``), as dvclive does: JSON has no such numbers.
        """
        for key, value in values.items():
            value = value if isinstance(value, str) or math.isfinite(value) else str(value)
            path = self.folder / PLOTS_DIR / f"{key}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            header = "" if path.exists() else f"step\t{key.rsplit('/', 1)[-1]}\n"
            with path.open("a", encoding="utf-8") as handle:
                handle.write(f"{header}{step}\t{value}\n")
            self._set(key, value)
        self.summary["step"] = step
        self._write_summary()

    def log_summary(self, values: dict[str, float]) -> None:
        """Record ``values`` in ``metrics.json`` only (no plot, no step): e.g. ``{"enabled": 0}``."""
        for key, value in values.items():
            self._set(key, value)
        self._write_summary()

    def _set(self, key: str, value: Any) -> None:
        *groups, name = key.split("/")
        node = self.summary
        for group in groups:
            node = node.setdefault(group, {})
        node[name] = value

    def _write_summary(self) -> None:
        atomic_write_text(self.folder / METRICS_JSON, json.dumps(self.summary, indent=4) + "\n")
