"""Stage `cluster`: pseudo-identities for an unlabeled target from its embeddings (AIN's linkage GCN).

The GCN learns "same identity?" on the kNN edges of a labelled embedding set (``cluster.train_on``),
then clusters ``cluster.target``. Outputs: ``<out>/<source>/pseudo_labels.jsonl`` (every target
sample: cluster, its size, confidence) and a shard set ``<out>/<source>/train-*.tar`` + index.json
holding the members of clusters with at least ``cluster.min_members`` faces under their pseudo
identity, readable by every training path like real labels. When the target's true identities are
known (the demo's held-out split), they only score the result (``metrics/cluster.json``), next to
the baselines, each with its free parameter chosen on the labelled set. With ``--cache FOLDER`` the
outputs of a finished run with the same embeddings, target shards, params and code are restored
instead (``stages._finished``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from faceops.config.base import BaseParams
from faceops.config.cluster import ClusterParams
from faceops.config.shard import ShardParams
from faceops.data.relabel import write_relabelled_shards
from faceops.data.split import identity_unit
from faceops.io.atomic import atomic_directory
from faceops.io.digest import sha256_file
from faceops.io.embeddings import read_embeddings
from faceops.io.jsonl import write_jsonl
from faceops.io.shards import split_urls, write_index
from faceops.runcache import split_digests
from stages._common import params_or_exit, parse_args, print_counts, write_metrics
from stages._finished import cache_folder, reuse_or_run

if TYPE_CHECKING:
    from faceops.cluster import LinkageGCN

GCN_FILE = "gcn.pt"
PROPAGATION_FILE = "propagation.json"
PSEUDO_LABELS = "pseudo_labels.jsonl"
CALIBRATION_SALT = "cluster-calibration"


def _calibration_mask(identities: Sequence[str], share: float) -> np.ndarray | None:
    """Rows of the identities held out of GCN training to choose the propagation, or None when
    ``share`` is 0 or either side would have fewer than 2 identities (nothing to learn or to score)."""
    held = np.array([identity_unit(i, salt=CALIBRATION_SALT) < share for i in identities])
    sides = (set(np.asarray(identities)[held]), set(np.asarray(identities)[~held]))
    return held if share > 0 and min(len(side) for side in sides) >= 2 else None


def _fit_gcn(vectors: np.ndarray, labels: np.ndarray, held: np.ndarray | None, cfg: ClusterParams, seed: int,
             k1: int) -> tuple[LinkageGCN, dict[str, float | int]]:  # fmt: skip
    """The linkage GCN (trained on the rows not ``held``) and its propagation settings: chosen on the
    ``held`` rows (``tune_gcn_links``: edge-score merge, min_score, max_size, split step), or ``cfg``'s
    (mean merge, step 0.6) when there are none."""
    from faceops.cluster import (
        train_linkage_gcn,  # torch: only when computing (stages._finished)
    )
    from faceops.cluster.select import PROPAGATION_GRID, tune_gcn_links

    gcn_args = {"k1": k1, "k2": min(cfg.k2, k1), "u": min(cfg.u, k1), "epochs": cfg.epochs, "seed": seed}
    if held is None:
        model = train_linkage_gcn(vectors, labels, **gcn_args)
        return model, {"reduce": "mean", "min_score": cfg.min_score, "max_size": cfg.max_size, "step": 0.6,
                       "calibrated": 0}  # fmt: skip
    model = train_linkage_gcn(vectors[~held], labels[~held], **gcn_args)
    grid = [(score, size) for score, size in PROPAGATION_GRID if size <= cfg.max_size] or [(cfg.min_score, cfg.max_size)]
    chosen, f = tune_gcn_links(vectors[held], labels[held], model, grid=grid)
    return model, {**chosen, "calibrated": 1, "calibration_pairwise_f": f, "calibration_samples": int(held.sum())}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["embeddings", "shards", "out", "model-out", "metrics"], argv, path_lists=["cache"])
    params = params_or_exit(args.params, base=BaseParams, cluster=ClusterParams, shard=ShardParams)
    cfg = params.cluster
    sets = {f"{ref.source}/{ref.split}.{ext}": sha256_file(args.embeddings / ref.source / f"{ref.split}.{ext}")
            for ref in (cfg.train_on, cfg.target) for ext in ("npy", "jsonl")}  # fmt: skip
    parts = [cfg.model_dump(mode="json"), params.base.seed, params.shard.maxcount, sets,
             split_digests(args.shards, cfg.target.source, [cfg.target.split])]  # fmt: skip
    outputs = {"out": args.out, "model": args.model_out, "metrics.json": args.metrics}
    reuse_or_run("cluster", cache_folder(args.cache), parts, outputs, lambda: _run(args, params))  # fmt: skip


def _run(args: Any, params: Any) -> None:
    """Train the GCN, cluster the target, write pseudo-labels, shards, model and metrics."""
    import torch  # only when computing: a restore never imports torch (stages._finished)

    from faceops.cluster import METHODS, LinkageGCN, clustering_scores, pseudo_labels
    from faceops.cluster.select import baseline_labels, label_confidence, tune_baseline

    cfg = params.cluster
    seed = params.base.seed
    torch.manual_seed(seed)
    known = read_embeddings(args.embeddings / cfg.train_on.source, cfg.train_on.split)
    target = read_embeddings(args.embeddings / cfg.target.source, cfg.target.split)
    if any(identity is None for identity in known.identities):
        raise SystemExit(f"cluster.train_on {cfg.train_on.source}/{cfg.train_on.split} has samples without an "
                         "identity; the GCN (and the baselines' parameter choice) need a labelled set")  # fmt: skip
    known_labels = np.unique(known.identities, return_inverse=True)[1]
    held = _calibration_mask(known.identities, cfg.calibration_share)
    sides = [len(known.vectors), len(target.vectors)] + ([] if held is None else [held.sum(), (~held).sum()])
    k1 = min(cfg.k1, int(min(sides)) - 1)  # a tiny set has fewer neighbours
    model, propagation = _fit_gcn(known.vectors, known_labels, held, cfg, seed, k1)
    with atomic_directory(args.model_out) as staging:
        torch.save(model.to_record(), staging / GCN_FILE)
        write_metrics(staging / PROPAGATION_FILE, propagation)
    model = LinkageGCN.from_record(torch.load(args.model_out / GCN_FILE, weights_only=True))

    def cluster_target(method: str) -> tuple[np.ndarray, np.ndarray]:
        """(labels, confidence) of the target by ``method``, its free parameters chosen on ``train_on``."""
        if method == "gcn":
            return pseudo_labels(target.vectors, model, max_size=int(propagation["max_size"]),
                                 min_score=float(propagation["min_score"]), step=float(propagation["step"]),
                                 reduce=str(propagation["reduce"]))  # fmt: skip
        value = tune_baseline(method, known.vectors, known_labels, k=k1)[0]
        found = baseline_labels(method, target.vectors, value, k=k1)
        return found, label_confidence(target.vectors, found, k=k1)

    labels, confidence = cluster_target(cfg.method)
    sizes = np.bincount(labels)
    source = cfg.target.source
    rows = [{"id": i, "cluster": f"{source}_c{label:06d}", "size": int(sizes[label]), "confidence": round(float(c), 4)}
            for i, label, c in zip(target.ids, labels, confidence)]  # fmt: skip
    kept = {r["id"]: {"identity": r["cluster"], "pseudo_confidence": r["confidence"]}
            for r in rows if r["size"] >= cfg.min_members}  # fmt: skip
    with atomic_directory(args.out) as staging:
        folder = staging / source
        write_jsonl(folder / PSEUDO_LABELS, rows)
        infos = write_relabelled_shards(split_urls(args.shards / source, cfg.target.split), kept, folder,
                                        split="train", maxcount=params.shard.maxcount)  # fmt: skip
        clusters = len({kept[k]["identity"] for k in kept})
        write_index(folder, {"format": 1, "source": f"{source}_pseudo", "samples": len(kept), "splits": {
            "train": {"shards": [i.name for i in infos], "samples": len(kept), "identities": clusters}}})  # fmt: skip
    metrics: dict[str, float | int] = {"samples": len(rows), "clusters": int((sizes > 0).sum()),
                                       "pseudo_samples": len(kept), "pseudo_identities": clusters,
                                       **{f"propagation/{k}": v for k, v in propagation.items() if k != "reduce"},
                                       "propagation/max_merge": int(propagation["reduce"] == "max")}  # fmt: skip
    if all(identity is not None for identity in target.identities):
        truth = np.unique(target.identities, return_inverse=True)[1]
        metrics.update({f"{cfg.method}/{k}": v for k, v in clustering_scores(truth, labels).items()})
        others = [m for m in METHODS if m != cfg.method]
        for method in others if cfg.compare_baselines else []:
            found = cluster_target(method)[0]
            metrics.update({f"{method}/{k}": v for k, v in clustering_scores(truth, found).items()})
    write_metrics(args.metrics, metrics)
    headline = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()
                if "/" not in k or k.endswith(("pairwise/f", "bcubed/f", "/nmi"))}  # fmt: skip
    print_counts(f"cluster ({cfg.method}) {source}/{cfg.target.split}", headline)


if __name__ == "__main__":
    main()
