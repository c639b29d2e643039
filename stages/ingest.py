"""Stage `ingest`: validate every raw source into one manifest; bad files go to quarantine with a reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from faceops.config.ingest import IngestParams
from faceops.ingest import scan_source
from faceops.io.atomic import atomic_directory
from faceops.io.jsonl import write_jsonl
from faceops.io.layout import MANIFEST, QUARANTINE
from stages._common import console, params_or_exit, parse_args, print_counts, progress_bar, write_metrics


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["raw", "out", "metrics"], argv)
    params = params_or_exit(args.params, ingest=IngestParams)
    cfg = params.ingest
    rows: list[dict] = []
    quarantine: list[dict] = []
    metrics: dict[str, int] = {}
    for source in cfg.sources:
        root = args.raw / source.name
        if not root.is_dir():
            raise SystemExit(
                f"source {source.name!r} is listed in params ingest.sources but {root} does not exist; "
                f"add it with `faceops ingest PATH --name {source.name}` or remove it from params.yaml"
            )
        n_files = sum(1 for p in root.rglob("*") if p.is_file())
        with progress_bar(f"ingest {source.name}", n_files) as advance:
            result = scan_source(
                root,
                source.name,
                source.format,
                max_pixels=cfg.max_pixels,
                max_file_bytes=cfg.max_file_bytes,
                min_side=cfg.min_side,
                progress=advance,
                workers=cfg.workers,
            )
        rows += result.rows
        quarantine += result.quarantine
        print_counts(f"{source.name}: {result.counts.get('accepted', 0)} accepted", result.counts)
        metrics.update({f"{source.name}/{key}": value for key, value in result.counts.items()})
    reasons = Counter(q["reason"] for q in quarantine)
    metrics.update({f"quarantine/{reason}": n for reason, n in reasons.items()})
    metrics["accepted"] = len(rows)
    metrics["quarantined"] = len(quarantine)
    with atomic_directory(args.out) as staging:
        write_jsonl(staging / MANIFEST, sorted(rows, key=lambda r: r["id"]))
        write_jsonl(staging / QUARANTINE, sorted(quarantine, key=lambda q: (q["source"], q["path"])))
    write_metrics(args.metrics, metrics)
    console.print(f"ingest: {len(rows)} accepted, {len(quarantine)} quarantined -> {args.out}")


if __name__ == "__main__":
    main()
