"""Stage `cluster`: pseudo-identities for an unlabeled target from its embeddings (AIN's linkage GCN).

``faceops.cluster.pseudo.pseudo_identities`` learns on ``cluster.train_on`` and clusters ``cluster.target``.
Outputs: ``<out>/<source>/pseudo_labels.jsonl`` (every target sample: cluster, its size, confidence) and a
shard set ``<out>/<source>/train-*.tar`` + index.json holding the members of clusters with at least
``cluster.min_members`` faces under their pseudo identity, readable by every training path like real
labels; ``--model-out``: the GCN record and its propagation settings. With ``--cache FOLDER`` the outputs
of a finished run with the same embeddings, target shards, params and code are restored instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from faceops.config.base import BaseParams
from faceops.config.cluster import ClusterParams
from faceops.config.shard import ShardParams
from faceops.io.atomic import atomic_directory, atomic_write_text
from faceops.io.digest import sha256_file
from faceops.io.embeddings import read_embeddings
from faceops.io.jsonl import write_jsonl
from faceops.io.shards import split_urls, write_index
from faceops.runcache import split_digests
from stages._common import params_or_exit, parse_args, print_counts, write_metrics
from stages._finished import cache_folder, reuse_or_run

GCN_FILE = "gcn.pt"
PROPAGATION_FILE = "propagation.json"
PSEUDO_LABELS = "pseudo_labels.jsonl"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["embeddings", "shards", "out", "model-out", "metrics"], argv, path_lists=["cache"])
    params = params_or_exit(args.params, base=BaseParams, cluster=ClusterParams, shard=ShardParams)
    cfg = params.cluster
    sets = {f"{ref.source}/{ref.split}.{ext}": sha256_file(args.embeddings / ref.source / f"{ref.split}.{ext}")
            for ref in (cfg.train_on, cfg.target) for ext in ("npy", "jsonl")}  # fmt: skip
    parts = [cfg.model_dump(mode="json"), params.base.seed, params.shard.maxcount, sets,
             split_digests(args.shards, cfg.target.source, [cfg.target.split])]  # fmt: skip
    outputs = {"out": args.out, "model": args.model_out, "metrics.json": args.metrics}
    reuse_or_run("cluster", cache_folder(args.cache), parts, outputs, lambda: _run(args, params))


def _run(args: Any, params: Any) -> None:
    """torch is imported here, not at the top: a restore never needs it (faceops.runcache)."""
    import torch

    from faceops.cluster.pseudo import pseudo_identities
    from faceops.data.relabel import write_relabelled_shards

    cfg, source = params.cluster, params.cluster.target.source
    known = read_embeddings(args.embeddings / cfg.train_on.source, cfg.train_on.split)
    target = read_embeddings(args.embeddings / source, cfg.target.split)
    found = pseudo_identities(known, target, cfg, seed=params.base.seed, name=source)
    with atomic_directory(args.model_out) as staging:
        torch.save(found.model.to_record(), staging / GCN_FILE)
        atomic_write_text(staging / PROPAGATION_FILE, json.dumps(found.propagation, indent=2, sort_keys=True) + "\n")
    with atomic_directory(args.out) as staging:
        write_jsonl(staging / source / PSEUDO_LABELS, found.rows)
        infos = write_relabelled_shards(split_urls(args.shards / source, cfg.target.split), found.kept,
                                        staging / source, split="train", maxcount=params.shard.maxcount)  # fmt: skip
        train = {"shards": [i.name for i in infos], "samples": len(found.kept),
                 "identities": found.metrics["pseudo_identities"]}  # fmt: skip
        write_index(staging / source, {"format": 1, "source": f"{source}_pseudo", "samples": len(found.kept),
                                       "splits": {"train": train}})  # fmt: skip
    write_metrics(args.metrics, found.metrics)
    headline = {k: round(v, 4) if isinstance(v, float) else v for k, v in found.metrics.items()
                if "/" not in k or k.endswith(("pairwise/f", "bcubed/f", "/nmi"))}  # fmt: skip
    print_counts(f"cluster ({found.metrics['method']}, asked {cfg.method}) {source}/{cfg.target.split}", headline)


if __name__ == "__main__":
    main()
