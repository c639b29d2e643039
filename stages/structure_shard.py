"""Stage `structure-shard`: every structure source (HEAT's layout) -> ingested, resized, split WebDataset shards.

``faceops.structure.shards.write_structure_shards`` runs the project's ingest (layout ``heat_planar``: each file
accepted or quarantined with a reason) on ``<raw>/<source>`` for each of ``structure_shard.sources`` and writes
``<out>/<source>/{train,val,test}-NNNNNN.tar`` + ``index.json``; refused files go to ``<out>/quarantine.jsonl``.
"""

from __future__ import annotations

from collections.abc import Sequence

from faceops.config.structure_shard import StructureShardParams
from faceops.io.atomic import atomic_directory
from faceops.io.jsonl import write_jsonl
from faceops.io.layout import QUARANTINE
from faceops.structure.shards import write_structure_shards
from stages._common import params_or_exit, parse_args, print_counts, write_metrics


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["raw", "out", "metrics"], argv)
    params = params_or_exit(args.params, structure_shard=StructureShardParams)
    cfg = params.structure_shard
    metrics: dict[str, int] = {}
    quarantine: list[dict] = []
    with atomic_directory(args.out) as staging:
        for source in cfg.sources:
            root = args.raw / source.name
            if not root.is_dir():
                raise SystemExit(f"structure_shard.sources lists {source.name!r} but {root} does not exist; put "
                                 "the source there in HEAT's layout (rgb/, annot/) or remove it from params.yaml")
            counts, refused = write_structure_shards(
                root, source.name, staging / source.name, image_size=cfg.image_size, fractions=cfg.split.model_dump(),
                maxcount=cfg.maxcount, jpeg_quality=cfg.jpeg_quality, max_pixels=cfg.max_pixels,
                max_file_bytes=cfg.max_file_bytes, min_side=cfg.min_side,
            )  # fmt: skip
            metrics.update({f"{source.name}/{key}": value for key, value in counts.items()})
            quarantine += refused
            print_counts(f"structure-shard {source.name}: {counts['accepted']} accepted", counts)
        write_jsonl(staging / QUARANTINE, quarantine)
    write_metrics(args.metrics, {**metrics, "quarantined": len(quarantine)})


if __name__ == "__main__":
    main()
