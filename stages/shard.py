"""Stage `shard`: aligned faces -> WebDataset tar shards per source, split by identity, byte-reproducible."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from faceops.config.shard import ShardParams
from faceops.data.split import UNLABELED_SPLIT, assign_split
from faceops.io.atomic import atomic_directory
from faceops.io.jsonl import read_jsonl
from faceops.io.layout import MANIFEST
from faceops.io.shards import ShardSample, write_index, write_shards
from stages._common import console, params_or_exit, parse_args, progress_bar, write_metrics


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["aligned", "out", "metrics"], argv)
    params = params_or_exit(args.params, shard=ShardParams)
    cfg = params.shard
    fractions = cfg.split.model_dump()
    by_source: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in read_jsonl(args.aligned / MANIFEST):
        identity = row["labels"].get("identity")
        split = UNLABELED_SPLIT if identity is None else assign_split(identity, fractions)
        by_source[row["source"]][split].append(row)
    metrics: dict[str, int] = {}
    total = sum(len(rows) for splits in by_source.values() for rows in splits.values())
    with atomic_directory(args.out) as staging, progress_bar("shard", total, "samples") as advance:
        for source in sorted(by_source):
            index: dict = {"format": 1, "source": source, "splits": {}, "samples": 0}
            for split in sorted(by_source[source]):
                rows = by_source[source][split]
                samples = (
                    ShardSample(key=r["id"], jpg=(args.aligned / r["face"]).read_bytes(),
                                meta={**r["labels"], "id": r["id"], "source": source})
                    for r in rows
                )  # fmt: skip
                infos = write_shards(samples, staging / source, split=split, maxcount=cfg.maxcount)
                identities = {r["labels"].get("identity") for r in rows} - {None}
                index["splits"][split] = {
                    "shards": [info.name for info in infos],
                    "samples": len(rows),
                    "identities": len(identities),
                }
                index["samples"] += len(rows)
                metrics[f"{source}/{split}/samples"] = len(rows)
                metrics[f"{source}/{split}/identities"] = len(identities)
                advance(len(rows))
            write_index(staging / source, index)
    write_metrics(args.metrics, metrics)
    console.print(f"shard: {total} samples -> {args.out}")


if __name__ == "__main__":
    main()
