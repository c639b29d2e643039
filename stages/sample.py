"""Stage `sample`: generate the embedded synthetic data set into data/raw/sample (images + labels.csv)."""

from __future__ import annotations

from collections.abc import Sequence

from faceops.config.base import BaseParams
from faceops.config.sample import SampleParams
from faceops.io.atomic import atomic_directory, atomic_write_bytes, atomic_write_text
from faceops.io.layout import LABELS_CSV
from faceops.sample import generate_sample, labels_csv
from stages._common import params_or_exit, parse_args, progress_bar, write_metrics


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["out", "metrics"], argv)
    params = params_or_exit(args.params, base=BaseParams, sample=SampleParams)
    cfg = params.sample
    total = cfg.identities * cfg.images_per_identity
    rows = []
    with atomic_directory(args.out) as staging, progress_bar("sample", total, "images") as advance:
        for image in generate_sample(
            cfg.identities,
            cfg.images_per_identity,
            seed=params.base.seed,
            min_side=cfg.min_side,
            max_side=cfg.max_side,
            jpeg_quality=tuple(cfg.jpeg_quality),
        ):
            target = staging / image.relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, image.jpeg)
            rows.append((image.relpath, image.labels))
            advance(1)
        atomic_write_text(staging / LABELS_CSV, labels_csv(rows))
    write_metrics(args.metrics, {"images": len(rows), "identities": cfg.identities})


if __name__ == "__main__":
    main()
