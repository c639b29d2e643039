"""Stage `align`: 5-point similarity warp of every accepted image to 112x112 (cached per image).

Landmarks per image, first that applies: the source's own (``align.use_given_landmarks``), the
``keypoints`` stage's pseudo-landmarks with mean confidence >= ``align.pseudo_min_confidence``
(``align.use_pseudo_landmarks``), else the detector. The manifest's ``landmark_source`` says which.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from faceops.align import AlignJob, align_many
from faceops.config.align import AlignParams
from faceops.config.base import BaseParams
from faceops.config.ingest import IngestParams
from faceops.io.atomic import atomic_directory, atomic_write_bytes
from faceops.io.jsonl import read_jsonl, write_jsonl
from faceops.io.layout import FACES_DIR, MANIFEST, QUARANTINE
from stages._common import console, params_or_exit, parse_args, print_counts, progress_bar, write_metrics


def _landmarks(row: dict, pseudo: dict[str, dict], cfg) -> tuple[np.ndarray | None, str | None]:
    """(points, origin) for the runner; None means "detect"."""
    given = row["labels"].get("landmarks")
    if given is not None and cfg.use_given_landmarks:
        return np.asarray(given, dtype=np.float64), "given"
    found = pseudo.get(row["id"]) if cfg.use_pseudo_landmarks else None
    if found is not None and float(np.mean(found["confidence"])) >= cfg.pseudo_min_confidence:
        return np.asarray(found["landmarks"], dtype=np.float64), "keypoints"
    return None, None


def _job(row: dict, raw, landmarks: np.ndarray | None) -> AlignJob:
    return AlignJob(id=row["id"], source=row["source"], image_path=raw / row["source"] / row["path"],
                    sha256=row["sha256"], given_landmarks=landmarks)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["raw", "interim", "keypoints", "cache", "out", "metrics"], argv)
    params = params_or_exit(args.params, base=BaseParams, ingest=IngestParams, align=AlignParams)
    cfg = params.align
    rows = list(read_jsonl(args.interim / MANIFEST))
    pseudo = {r["id"]: r for r in read_jsonl(args.keypoints / MANIFEST)
              if r["origin"] == "unlabeled" and r.get("kind", "face") == "face"}  # fmt: skip
    chosen = [_landmarks(row, pseudo, cfg) for row in rows]
    with progress_bar("align", len(rows), "faces") as advance:
        results = align_many(
            [_job(row, args.raw, points) for row, (points, _) in zip(rows, chosen, strict=True)],
            cache_dir=args.cache,
            size=params.base.image_size,
            detector=cfg.detector,
            min_score=cfg.min_score,
            multiple_faces=cfg.multiple_faces,
            use_given_landmarks=True,  # _landmarks already applied use_given/use_pseudo
            jpeg_quality=cfg.jpeg_quality,
            max_pixels=params.ingest.max_pixels,
            workers=cfg.workers,
            runner=cfg.runner,
            dask_address=cfg.dask_address,
            progress=advance,
        )
    manifest, quarantine = [], []
    with atomic_directory(args.out) as staging:
        (staging / FACES_DIR).mkdir()
        for row, res, (_, origin) in zip(rows, results, chosen, strict=True):
            if not res.ok:
                quarantine.append(
                    {"source": row["source"], "path": row["path"], "stage": "align",
                     "reason": res.reason, "detail": res.detail}
                )  # fmt: skip
                continue
            face = f"{FACES_DIR}/{row['id']}.jpg"
            atomic_write_bytes(staging / face, res.jpeg)
            manifest.append(
                {"id": row["id"], "source": row["source"], "sha256": row["sha256"], "labels": row["labels"],
                 "landmarks": np.asarray(res.landmarks).round(3).tolist(),
                 "landmark_source": origin or res.landmark_source,
                 "score": None if res.score is None else round(float(res.score), 6), "face": face}
            )  # fmt: skip
        write_jsonl(staging / MANIFEST, manifest)
        write_jsonl(staging / QUARANTINE, quarantine)
    sources = Counter(m["landmark_source"] for m in manifest)
    reasons = Counter(q["reason"] for q in quarantine)
    counts = {"aligned": len(manifest), **{f"landmarks/{k}": v for k, v in sources.items()},
              **{f"quarantine/{k}": v for k, v in reasons.items()}}  # fmt: skip
    print_counts(f"align: {len(manifest)} of {len(rows)} aligned", counts)
    write_metrics(args.metrics, {"seen": len(rows), **counts})
    console.print(f"align -> {args.out}")


if __name__ == "__main__":
    main()
