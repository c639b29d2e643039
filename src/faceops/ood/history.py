"""The history of the ``monitor`` stage's verdicts: one row per (version, source), what ``faceops report`` shows.

Pure: the caller reads each version's ``monitor`` metrics (flows.monitoring reads them from git) and passes
them in; no torch, so the CLI stays quick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["HISTORY_COLUMNS", "monitor_history"]

#: The columns of a history row, in display order.
HISTORY_COLUMNS = ("version", "source", "incoming", "gscore", "ood_share", "retrain")


def monitor_history(versions: Sequence[tuple[str, Mapping[str, float]]]) -> list[dict[str, object]]:
    """One row per (version, source) from each version's monitor metrics, in the order given.

    Args:
        versions: ``(version label, flat metrics of that version's monitor run)``, e.g. newest first.

    Returns:
        Rows with :data:`HISTORY_COLUMNS`: ``incoming`` and ``retrain`` (0/1) as ints, ``gscore`` and
        ``ood_share`` as floats, None where a version's metrics lack a value.
    """
    rows = []
    for label, metrics in versions:
        for source in sorted(k[: -len("/incoming")] for k in metrics if k.endswith("/incoming")):
            retrain = metrics.get(f"{source}/retrain")
            rows.append({"version": label, "source": source, "incoming": int(metrics[f"{source}/incoming"]),
                         "gscore": metrics.get(f"{source}/gscore"), "ood_share": metrics.get(f"{source}/ood_share"),
                         "retrain": None if retrain is None else int(retrain)})  # fmt: skip
    return rows
