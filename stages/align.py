"""Stage `align`: 5-point similarity warp of every accepted image to 112x112 (cached per image)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from faceops.align import AlignJob, align_many
from faceops.io.atomic import atomic_directory
from faceops.io.jsonl import atomic_write_bytes, read_jsonl, write_jsonl
from faceops.io.layout import FACES_DIR, MANIFEST, QUARANTINE
from stages._common import console, params_or_exit, parse_args, print_counts, progress_bar, write_metrics


def _job(row: dict, raw) -> AlignJob:
    given = row["labels"].get("landmarks")
    return AlignJob(
        id=row["id"],
        source=row["source"],
        image_path=raw / row["source"] / row["path"],
        sha256=row["sha256"],
        given_landmarks=None if given is None else np.asarray(given, dtype=np.float64),
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["raw", "interim", "cache", "out", "metrics"], argv)
    params = params_or_exit(args.params)
    cfg = params.align
    rows = list(read_jsonl(args.interim / MANIFEST))
    with progress_bar("align", len(rows), "faces") as advance:
        results = align_many(
            [_job(row, args.raw) for row in rows],
            cache_dir=args.cache,
            size=params.base.image_size,
            detector=cfg.detector,
            min_score=cfg.min_score,
            multiple_faces=cfg.multiple_faces,
            use_given_landmarks=cfg.use_given_landmarks,
            jpeg_quality=cfg.jpeg_quality,
            max_pixels=params.ingest.max_pixels,
            workers=cfg.workers,
            progress=advance,
        )
    manifest, quarantine = [], []
    with atomic_directory(args.out) as staging:
        (staging / FACES_DIR).mkdir()
        for row, res in zip(rows, results, strict=True):
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
                 "landmarks": np.asarray(res.landmarks).round(3).tolist(), "landmark_source": res.landmark_source,
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
