"""The run report: contact sheets, the stage's summary, the headline table and the HTML page.

Pure functions over arrays and dicts: the `report` stage writes the contact sheets and ``summary.json`` /
``summary.md`` (:func:`report_summary`, :func:`summary_markdown`); ``faceops report`` gathers them with every
stage's metrics into the headline table (``faceops.report.headline``) and the page (``faceops.report.page``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["contact_sheet", "report_summary", "summary_markdown"]


def contact_sheet(faces: Sequence[np.ndarray], *, columns: int, pad: int = 2, background: int = 255) -> np.ndarray:
    """Tile equally sized faces into one image, row-major, in the given order.

    Args:
        faces: images [H, W, 3] uint8, all the same shape.
        columns: tiles per row (fewer if there are fewer faces).
        pad: pixels between tiles and around the border.
        background: grey level of the padding.

    Returns:
        [rows*(H+pad)+pad, cols*(W+pad)+pad, 3] uint8; a 1x1 background image when ``faces`` is empty.
    """
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    if not faces:
        return np.full((1, 1, 3), background, np.uint8)
    h, w = faces[0].shape[:2]
    bad = [i for i, f in enumerate(faces) if f.shape != (h, w, 3) or f.dtype != np.uint8]
    if bad:
        raise ValueError(f"faces must all be [{h}, {w}, 3] uint8; faces {bad[:5]} are not")
    cols = min(columns, len(faces))
    rows = -(-len(faces) // cols)
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), background, np.uint8)
    for i, face in enumerate(faces):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        sheet[y : y + h, x : x + w] = face
    return sheet


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines


def report_summary(
    sources: Mapping[str, Mapping[str, Mapping]], quarantine: Sequence[Mapping[str, str]], *, max_rows: int
) -> dict:
    """The report stage's ``summary.json``: shards, quarantine by reason and file, per-source counts.

    Args:
        sources: ``{source: {split: {"samples", "identities", "shards"}}}`` (the shard indexes).
        quarantine: quarantine rows (``source``, ``path``, ``stage``, ``reason``, ``detail``), any order.
        max_rows: how many quarantine rows to list (the counts always cover all of them).

    Returns:
        ``sources``; ``quarantine``: ``[source, stage, reason, files]`` sorted; ``quarantine_rows``: the first
        ``max_rows`` rows by (source, stage, path); ``quarantine_total``; ``counts`` (``samples``,
        ``quarantined``); ``metrics``: ``<source>/samples``, ``<source>/quarantined`` and
        ``<source>/quarantined/<stage>``, flat like a stage's metrics (the page's ``report/...`` keys).
    """
    rows = sorted(quarantine, key=lambda q: (q["source"], q["stage"], q["path"]))
    by_reason = Counter((q["source"], q["stage"], q["reason"]) for q in rows)
    metrics: dict[str, int] = {}
    for name in sorted(set(sources) | {q["source"] for q in rows}):
        metrics[f"{name}/samples"] = sum(info["samples"] for info in sources.get(name, {}).values())
        metrics[f"{name}/quarantined"] = sum(1 for q in rows if q["source"] == name)
        for stage in sorted({q["stage"] for q in rows if q["source"] == name}):
            metrics[f"{name}/quarantined/{stage}"] = sum(1 for q in rows if (q["source"], q["stage"]) == (name, stage))
    return {
        "sources": {name: dict(sorted(splits.items())) for name, splits in sorted(sources.items())},
        "quarantine": [[*key, n] for key, n in sorted(by_reason.items())],
        "quarantine_rows": [dict(q) for q in rows[:max_rows]],
        "quarantine_total": len(rows),
        "counts": {"samples": sum(v for k, v in metrics.items() if k.endswith("/samples")), "quarantined": len(rows)},
        "metrics": metrics,
    }


def summary_markdown(summary: Mapping) -> str:
    """The summary (:func:`report_summary`) as short markdown: counts, shards, quarantine by reason.

    The metrics are not repeated here: ``faceops report`` prints the rounded headline and writes the page.
    """
    lines = ["# faceops report", "", *_table(["what", "n"], sorted(summary["counts"].items())), "", "## Shards", ""]
    shard_rows = [
        (source, split, info["samples"], info["identities"], len(info["shards"]))
        for source, splits in summary["sources"].items()
        for split, info in splits.items()
    ]
    lines += [*_table(["source", "split", "samples", "identities", "shards"], shard_rows), "", "## Quarantine", ""]
    quarantined = summary["quarantine"]
    lines += _table(["source", "stage", "reason", "files"], quarantined) if quarantined else ["none"]
    return "\n".join(lines) + "\n"
