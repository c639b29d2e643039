"""Benchmark: does AIN raise verification accuracy on the target groups over a source-only model?

Question: a face model trained on the labelled identities of one skin-tone group of the sample data (source g0,
the lightest) is carried to the other groups (targets g1..g3, their train-split faces *unlabeled*) with AIN
(``faceops.adapt.adapt_model``: linkage-GCN pseudo-identities + adversarial mutual information, ``--rounds``
rounds of ``--round-steps`` steps). Does its per-group verification accuracy on the held-out test identities of
the target groups (10-fold, pairs within each group: RFW's protocol) beat the source-only model's?

Fairness of the comparison: both start from the same source model (``--source-steps`` steps on g0 from scratch);
the source-only baseline then trains on g0 for the same rounds x steps with the same schedule (each round a fresh
job from the last model, like AIN's), so AIN's only extras are the target rows and its two losses. The target
labels never reach training (the rounds train on copies whose identities are pseudo-labels or null); they only
score the clustering in the metrics. Data, training and evaluation are seeded; every seed builds its own data set.

Goal (exit 1 otherwise): AIN's mean accuracy over the target groups is higher than the baseline's in every seed
(the mean and spread over ``--seeds`` are printed; the source group is shown for reference).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import environment  # noqa: E402
from _groups import CPU, GROUPS, fmt, group_accuracy, mean_spread, sample_shards, train_model  # noqa: E402

from faceops.adapt import adapt_model, select_by_group, write_domain  # noqa: E402
from faceops.config.adapt import AdaptParams  # noqa: E402
from faceops.config.cluster import ClusterParams  # noqa: E402
from faceops.config.train import TrainParams  # noqa: E402
from faceops.io.checkpoint import save_checkpoint  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "adapt.json"
SOURCE, TARGETS = ("g0",), ("g1", "g2", "g3")


def run_seed(args: argparse.Namespace, seed: int, root: Path) -> dict[str, dict]:
    """Per-group accuracy of the source model, the source-only baseline and AIN, for one seed."""
    urls = sample_shards(root, args.identities, args.images, seed)
    source = write_domain(urls["train"], {k: {} for k in select_by_group(urls["train"], SOURCE)}, root / "g0",
                          maxcount=100)  # fmt: skip
    fit = {"sources": [{"name": "sample"}], "batch_size": args.batch, "margin_scale": 32.0, "margin_cos": 0.2,
           "checkpoint_every": 10_000, "precision": "fp32"}  # fmt: skip
    start = TrainParams(**fit, steps=args.source_steps, warmup_steps=args.source_steps // 10, backbone_lr_scale=1.0)
    model = train_model(start, source, seed=seed, out=root / "source.pt")
    found = {"source model": group_accuracy(model, urls["test"], seed=seed)}
    began = time.perf_counter()
    baseline = model
    for index in range(args.rounds):  # the same schedule as AIN's rounds, on the source alone
        again = TrainParams(**fit, steps=args.round_steps, warmup_steps=args.round_steps // 10)
        baseline = train_model(again, source, seed=seed + index, out=root / f"baseline-{index}.pt", init=baseline)
    seconds = {"source-only": time.perf_counter() - began}
    found["source-only"] = group_accuracy(baseline, urls["test"], seed=seed)
    cfg = AdaptParams(**fit, source_groups=list(SOURCE), target={"source": "sample", "groups": list(TARGETS)},
                      rounds=args.rounds, steps=args.round_steps, warmup_steps=args.round_steps // 10,
                      target_batch=args.target_batch, mi_weight=args.mi_weight, maxcount=100)  # fmt: skip
    began = time.perf_counter()
    adapted = adapt_model(cfg, ClusterParams(epochs=20), seed=seed, source_urls={"sample": urls["train"]},
                          target_urls=urls["train"], init_file=model, workdir=root / "ain", dist=CPU)  # fmt: skip
    seconds["AIN"] = time.perf_counter() - began
    save_checkpoint(root / "ain.pt", adapted.record, kind="model")
    found["AIN"] = group_accuracy(root / "ain.pt", urls["test"], seed=seed)
    return {"accuracy": found, "seconds": seconds, "clustering": pseudo_label_quality(adapted.metrics, args.rounds)}


def pseudo_label_quality(metrics: dict, rounds: int) -> dict[str, str | float | int]:
    """Per round: the clustering method the stage chose, its pseudo-identities and their pairwise F against the
    target's hidden identities (the labels AIN trained on), next to the linkage GCN's F."""
    found: dict[str, str | float | int] = {}
    for index in range(rounds):
        prefix = f"round/{index}/cluster/"
        method = metrics[prefix + "method"]
        found |= {f"round/{index}/method": method,
                  f"round/{index}/pseudo_identities": metrics[prefix + "pseudo_identities"],
                  f"round/{index}/pairwise/f": metrics[prefix + f"{method}/pairwise/f"],
                  f"round/{index}/gcn/pairwise/f": metrics[prefix + "gcn/pairwise/f"]}  # fmt: skip
    return found


def target_mean(groups: dict) -> float:
    """Mean verification accuracy over the target groups."""
    missing = [g for g in TARGETS if f"{g}/acc" not in groups]
    if missing:
        raise SystemExit(f"groups {missing} have too few test pairs for 10-fold verification; raise --identities")
    return sum(groups[f"{g}/acc"] for g in TARGETS) / len(TARGETS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=80)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--source-steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--round-steps", type=int, default=80)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--target-batch", type=int, default=16)
    parser.add_argument("--mi-weight", type=float, default=AdaptParams().mi_weight)
    args = parser.parse_args()
    runs = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            runs[seed] = run_seed(args, seed, Path(tmp))
        print(f"seed {seed}: " + ", ".join(f"{name} {100 * target_mean(acc):.2f}" for name, acc in
                                          runs[seed]["accuracy"].items()) + " (target mean)", flush=True)  # fmt: skip
        print(f"  pseudo-labels: {runs[seed]['clustering']}", flush=True)
    variants = ["source model", "source-only", "AIN"]
    table = {name: {f"{g}/acc": [runs[s]["accuracy"][name][f"{g}/acc"] for s in args.seeds] for g in GROUPS}
             for name in variants}  # fmt: skip
    for name in variants:
        table[name]["target"] = [target_mean(runs[s]["accuracy"][name]) for s in args.seeds]
    print(f"\nverification accuracy (%), mean ± std over seeds {args.seeds}; source {SOURCE}, targets {TARGETS}")
    print(f"{'group':<10}" + "".join(f"{name:>18}" for name in variants))
    for key in [f"{g}/acc" for g in GROUPS] + ["target"]:
        print(f"{key:<10}" + "".join(f"{fmt(table[name], key):>18}" for name in variants))
    gains = [a - b for a, b in zip(table["AIN"]["target"], table["source-only"]["target"], strict=True)]
    gain, spread = mean_spread([100 * g for g in gains])
    met = all(g > 0 for g in gains)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "runs": runs, "table": table, "target_gain_points": gains,
                                   "goal_met": met, "environment": environment("torch")}, indent=2))  # fmt: skip
    print(f"SUMMARY adapt: target-group accuracy AIN {fmt(table['AIN'], 'target')} vs source-only "
          f"{fmt(table['source-only'], 'target')} (gain {gain:+.2f} ± {spread:.2f} points, per seed "
          f"{[round(100 * g, 2) for g in gains]}): {'MET' if met else 'NOT MET'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
