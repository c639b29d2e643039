"""Benchmark: do LRFR's multi-resolution views + LogExp make recognition hold up at low resolution?

Question: the recognition-only model (``swinface_cpu_rec``, the ``pretrain`` stage's job) trained from scratch on
the sample data's train split, with and without ``pretrain.lowres`` (LRFR, arXiv:2302.05621: a low-resolution
view of every face in the same forward, 7/14/20 px at 50/30/20 %, task loss on the views + LogExp between the
views' embeddings, ``faceops.train.lowres``), same steps, batch, seed and faces. On the held-out test identities,
the low-resolution protocol of ``evaluate`` (``faceops.eval.lowres``): 10-fold verification accuracy with one
face of each pair degraded to 7, 14, 20, 28, 56, 112 px (antialiased bicubic), and LR-vs-HR rank-1.

Goal (exit 1 otherwise), on the means over ``--seeds``: the mean verification accuracy over 7/14/20 px is higher
with LRFR than without, and at 112 px LRFR is at most 1 point below the baseline. Every seed builds its own data
set (the sample generator, aligned with its exact landmarks: bench/multitask.py) and trains both models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import environment  # noqa: E402
from _sample_seeds import mean_std, sample_parser, seeded_runs  # noqa: E402
from multitask import build_shards  # noqa: E402

from faceops.config.lowres import LowResTrainParams  # noqa: E402
from faceops.config.pretrain import PretrainParams  # noqa: E402
from faceops.eval.lowres import lowres_protocol, read_faces  # noqa: E402
from faceops.io.shards import split_urls  # noqa: E402
from faceops.train import DistInfo, build_model  # noqa: E402
from faceops.train.job import run_training  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "lowres.json"
RESOLUTIONS = (7, 14, 20, 28, 56, 112)
LOW = (7, 14, 20)
CPU = DistInfo(0, 1, 0, torch.device("cpu"))


def run_seed(args: argparse.Namespace, seed: int, root: Path) -> dict[str, dict[str, float]]:
    """Verification accuracy and rank-1 per resolution of the baseline and the LRFR model, for one seed."""
    folder = build_shards(root, args.identities, args.images, seed) / "sample"
    fit = {"sources": [{"name": "sample"}], "steps": args.steps, "warmup_steps": args.steps // 10,
           "batch_size": args.batch, "margin_scale": 32.0, "margin_cos": 0.2, "checkpoint_every": 10_000,
           "precision": "fp32"}  # fmt: skip
    variants = {"baseline": PretrainParams(**fit), "LRFR": PretrainParams(**fit, lowres=LowResTrainParams(enabled=True))}
    images, metas, keys = read_faces(split_urls(folder, "test"))
    found: dict[str, dict[str, float]] = {}
    for name, cfg in variants.items():
        began = time.perf_counter()
        trained = run_training(cfg, seed=seed, shard_urls={"sample": split_urls(folder, "train")}, dist=CPU,
                               resume_file=root / f"{name}-last.pt")  # fmt: skip
        model = build_model(trained.record)
        metrics, _ = lowres_protocol(model, images, metas, keys, resolutions=RESOLUTIONS, n_pairs=4000, folds=10,
                                     seed=seed, batch_size=64)  # fmt: skip
        found[name] = {k.removeprefix("lowres/"): v for k, v in metrics.items() if k.count("/") >= 2}
        found[name]["seconds"] = time.perf_counter() - began
        found[name]["low/verif/acc"] = statistics.fmean(found[name][f"{r}/verif/acc"] for r in LOW)
    return found


def main() -> int:
    parser = sample_parser(__doc__.splitlines()[0], steps=240)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    runs = seeded_runs(args, run_seed, lambda run: ", ".join(f"{arm} {run[arm]['seconds']:.0f} s" for arm in run))
    keys = [f"{r}/verif/acc" for r in RESOLUTIONS] + ["low/verif/acc"] + [f"{r}/rank1" for r in RESOLUTIONS]
    print(f"{'metric (points, mean ± std over ' + str(len(runs)) + ' seeds)':<44}{'baseline':>16}{'LRFR':>16}")
    table = {}
    for key in keys:
        cells = {arm: mean_std([run[arm][key] * 100 for run in runs]) for arm in ("baseline", "LRFR")}
        table[key] = cells
        print(f"{key:<44}" + "".join(f"{m:>9.2f} ± {s:4.2f}" for m, s in cells.values()))
    low_gain = table["low/verif/acc"]["LRFR"][0] - table["low/verif/acc"]["baseline"][0]
    hr_drop = table["112/verif/acc"]["baseline"][0] - table["112/verif/acc"]["LRFR"][0]
    goals = {"LR (7/14/20 px) verification up": low_gain > 0, "112 px within 1 point": hr_drop <= 1.0}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "runs": runs, "table": table, "goals": goals,
                                   "environment": environment("torch")}, indent=2))  # fmt: skip
    missed = [name for name, ok in goals.items() if not ok]
    print(f"SUMMARY lowres: 7/14/20 px verification {table['low/verif/acc']['LRFR'][0]:.2f} (LRFR) vs "
          f"{table['low/verif/acc']['baseline'][0]:.2f} (baseline) points, {low_gain:+.2f}; 112 px "
          f"{table['112/verif/acc']['LRFR'][0]:.2f} vs {table['112/verif/acc']['baseline'][0]:.2f}; "
          f"{'goals met' if not missed else 'NOT MET ' + str(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
