"""Benchmark: does GABN make verification accuracy more even across the skin-tone groups, at no cost in the mean?

Question: the ``train`` stage's multi-task model trained from scratch on the sample data's train split (all four
skin-tone groups g0..g3, labelled) with and without GABN (``train.gabn``: the attention adversary and Top-N
erasing, ``faceops.fairness``), same steps, batch, seed and data. On the held-out test identities, per-group
10-fold verification accuracy (pairs within each group: RFW's protocol, ``faceops.eval.groups``), their mean,
population std and skewed error ratio SER = max error / min error.

Goal (exit 1 otherwise), on the means over ``--seeds``: GABN's std or SER is lower than the baseline's, and its
mean accuracy is at most 1 point below the baseline's. Every seed builds its own data set and trains both.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import environment, sized_results  # noqa: E402
from _groups import GROUPS, fmt, group_accuracy, mean_spread, sample_shards, train_model  # noqa: E402

from faceops.config.gabn import GabnParams  # noqa: E402
from faceops.config.train import TrainParams  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "fairness.json"
#: identities x photos per identity of the committed result; another size writes fairness_<ids>x<imgs>.json
DEFAULT_SIZE = (80, 10)
DEFAULT_STEPS = 200
KEYS = [*(f"{g}/acc" for g in GROUPS), "mean", "std", "ser"]


def run_seed(args: argparse.Namespace, seed: int, root: Path) -> dict[str, dict]:
    """Per-group accuracy, mean, std and SER of the baseline and the GABN model, for one seed."""
    urls = sample_shards(root, args.identities, args.images, seed)
    fit = {"sources": [{"name": "sample"}], "steps": args.steps, "warmup_steps": args.steps // 10,
           "batch_size": args.batch, "backbone_lr_scale": 1.0, "margin_scale": 32.0, "margin_cos": 0.2,
           "checkpoint_every": 10_000, "precision": "fp32"}  # fmt: skip
    variants = {"baseline": TrainParams(**fit), "GABN": TrainParams(**fit, gabn=GabnParams(enabled=True))}
    found, seconds = {}, {}
    for name, cfg in variants.items():
        began = time.perf_counter()
        model = train_model(cfg, urls["train"], seed=seed, out=root / f"{name}.pt")
        seconds[name] = time.perf_counter() - began
        found[name] = group_accuracy(model, urls["test"], seed=seed)
    return {"accuracy": found, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=DEFAULT_SIZE[0])
    parser.add_argument("--images", type=int, default=DEFAULT_SIZE[1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    runs = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            runs[seed] = run_seed(args, seed, Path(tmp))
        print(f"seed {seed}: " + ", ".join(f"{name} mean {100 * acc['mean']:.2f} std {100 * acc['std']:.2f} ser "
                                          f"{acc['ser']:.2f}" for name, acc in runs[seed]["accuracy"].items()),
              flush=True)  # fmt: skip
    table = {name: {key: [runs[s]["accuracy"][name][key] for s in args.seeds] for key in KEYS}
             for name in ("baseline", "GABN")}  # fmt: skip
    print(f"\nper-group verification accuracy (%), std (points), SER; mean ± std over seeds {args.seeds}")
    print(f"{'':<10}{'baseline':>18}{'GABN':>18}")
    for key in KEYS:
        scale = 1.0 if key == "ser" else 100.0
        print(f"{key:<10}{fmt(table['baseline'], key, scale):>18}{fmt(table['GABN'], key, scale):>18}")
    means = {name: {key: mean_spread(values)[0] for key, values in table[name].items()} for name in table}
    base, gabn = means["baseline"], means["GABN"]
    fairer = gabn["std"] < base["std"] or (math.isfinite(base["ser"]) and gabn["ser"] < base["ser"])
    kept = gabn["mean"] >= base["mean"] - 0.01
    met = fairer and kept
    tags = [] if args.steps == DEFAULT_STEPS else [f"{args.steps}steps"]
    results = sized_results(RESULTS, args.identities, args.images, DEFAULT_SIZE, tags=tags)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"args": vars(args), "runs": runs, "table": table, "means": means,
                                   "goals": {"std or SER lower": fairer, "mean within 1 point": kept},
                                   "environment": environment("torch")}, indent=2))  # fmt: skip
    print(f"SUMMARY fairness: GABN std {100 * gabn['std']:.2f} vs {100 * base['std']:.2f}, SER {gabn['ser']:.2f} vs "
          f"{base['ser']:.2f}, mean {100 * gabn['mean']:.2f} vs {100 * base['mean']:.2f} (baseline): "
          f"{'MET' if met else 'NOT MET'} (std or SER lower: {fairer}; mean within 1 point: {kept})")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
