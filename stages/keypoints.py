"""Stage `keypoints`: SSPCM pseudo-keypoints for face landmarks (read by `align`) and COCO body joints.

Per source in ``keypoints.sources``, ``faceops.keypoints.pseudo_keypoints`` crops, trains, predicts and
scores. Writes ``<out>/manifest.jsonl`` (one row per prediction) and ``quarantine.jsonl``, and the model
records ``keypoints.pt`` (faces) and ``body.pt`` (bodies) in ``--model-out``, both for
``torch.load(weights_only=True)``. With ``--cache FOLDER`` a finished run with the same params, seed
and rows read (image bytes by their sha256) is restored instead (``stages._finished``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faceops.config.base import BaseParams
from faceops.config.ingest import IngestParams
from faceops.config.keypoints import KeypointsParams
from faceops.io.atomic import atomic_directory
from faceops.io.images import read_image
from faceops.io.jsonl import read_jsonl, write_jsonl
from faceops.io.layout import MANIFEST, QUARANTINE
from stages._common import params_or_exit, parse_args, print_counts, progress_bar, write_metrics
from stages._finished import cache_folder, reuse_or_run

#: File of each task's model record in ``--model-out``.
MODEL_FILES = {"face": "keypoints.pt", "body": "body.pt"}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["raw", "interim", "out", "model-out", "metrics"], argv, path_lists=["cache"])
    params = params_or_exit(args.params, base=BaseParams, ingest=IngestParams, keypoints=KeypointsParams)
    cfg = params.keypoints
    rows = [r for r in read_jsonl(args.interim / MANIFEST) if cfg.enabled and r["source"] in cfg.sources]
    # What decides the outputs: the params, the seed and the rows read (image bytes via their sha256);
    # not the other sources' photos, whose arrival makes DVC re-run the stage (data/raw is one dependency).
    used = [(r["id"], r["source"], r["path"], r["sha256"], r["labels"]) for r in rows]
    reuse_or_run("keypoints", cache_folder(args.cache),
                 [cfg.model_dump(mode="json"), params.base.seed, params.ingest.max_pixels, used],
                 {"out": args.out, "model": args.model_out, "metrics.json": args.metrics},
                 lambda: _run(args, params, rows))  # fmt: skip


def _run(args: Any, params: Any, rows: list[dict[str, Any]]) -> None:
    """torch is imported here, not at the top: a restore never needs it (faceops.runcache)."""
    import torch

    from faceops.keypoints import pseudo_keypoints

    def load(row: dict[str, Any]):
        return read_image(args.raw / row["source"] / row["path"], max_pixels=params.ingest.max_pixels)

    found = pseudo_keypoints(rows, load, params.keypoints, seed=params.base.seed, progress=progress_bar)
    with atomic_directory(args.model_out) as models, atomic_directory(args.out) as staging:
        for kind, record in found.models.items():
            torch.save(record, models / MODEL_FILES[kind])
        write_jsonl(staging / MANIFEST, found.manifest)
        write_jsonl(staging / QUARANTINE, found.quarantine)
    write_metrics(args.metrics, found.metrics)
    print_counts("keypoints", {k: round(v, 4) if isinstance(v, float) else v for k, v in found.metrics.items()})


if __name__ == "__main__":
    main()
