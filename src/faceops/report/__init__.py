"""Report building blocks: contact sheets of aligned faces and a plain-text/markdown summary.

Pure functions over arrays and dicts; the `report` stage reads the inputs and writes the files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["contact_sheet", "summary_markdown"]


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


def summary_markdown(summary: Mapping) -> str:
    """Render the report summary (as built by the `report` stage) as markdown.

    Expected keys: ``sources`` {source: {split: {"samples", "identities", "shards"}}}, ``quarantine``
    {stage: {reason: count}}, ``counts`` {name: value}, optional ``metrics`` {name: value} (zero counts are left out of the table).
    """
    lines = ["# faceops report", ""]
    counts = summary.get("counts", {})
    if counts:
        lines += ["## Counts", "", *_table(["what", "n"], sorted(counts.items())), ""]
    lines += ["## Shards", ""]
    shard_rows = [
        (source, split, info["samples"], info["identities"], len(info["shards"]))
        for source, splits in sorted(summary.get("sources", {}).items())
        for split, info in sorted(splits.items())
    ]
    lines += [*_table(["source", "split", "samples", "identities", "shards"], shard_rows), ""]
    quarantine_rows = [
        (stage, reason, n)
        for stage, reasons in sorted(summary.get("quarantine", {}).items())
        for reason, n in sorted(reasons.items())
    ]
    lines += ["## Quarantine", ""]
    lines += _table(["stage", "reason", "files"], quarantine_rows) if quarantine_rows else ["none"]
    metrics = {k: v for k, v in summary.get("metrics", {}).items() if v != 0}
    if metrics:
        lines += ["", "## Metrics", "", *_table(["metric", "value"], sorted(metrics.items()))]
    return "\n".join(lines) + "\n"
