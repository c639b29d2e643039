"""Benchmark: does a short-trained tiny FIWHN beat bicubic upsampling on held-out faces, and does it help recognition?

Question: FIWHN x4 (arXiv:2212.14181, ``faceops.models.fiwhn``) at the demo's size (8 channels, 150 steps of 8
random 12 px LR patches, Adam at 2e-3 with cosine decay: ``params.yaml`` ``sr``) trained by the ``sr`` stage's
job (``faceops.sr.job.run_sr``) on the sample data's train split, scored on the held-out test identities' faces
(112 -> 28 px by the antialiased bicubic, back to 112 px): PSNR and SSIM on the Y channel, 4 border pixels
shaved, against bicubic upsampling of the same 28 px faces. Two starts, same steps: ``skip_init: bicubic``
(ours: the network starts as bicubic-like upsampling; the demo's) and ``default`` (PyTorch's initialisation,
as the official code, which trains for 1M steps). Then recognition of 14 px probes: the recognition-only model
(``pretrain``'s job, 120 steps) on the test identities, verification with one face of each pair at 14 px,
brought back to 112 px by bicubic or by FIWHN (then bicubic from 56 px) (``faceops.eval.lowres``).

Goal (exit 1 otherwise), on the means over ``--seeds``: FIWHN (bicubic start) has a higher PSNR-Y than bicubic.
The recognition figures are reported without a goal. Every seed builds its own data set and trains everything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import environment  # noqa: E402
from _sample_seeds import mean_std, sample_parser, seeded_runs  # noqa: E402
from multitask import build_shards  # noqa: E402

from faceops.config.pretrain import PretrainParams  # noqa: E402
from faceops.config.sr import SrParams  # noqa: E402
from faceops.eval.lowres import lowres_protocol, read_faces  # noqa: E402
from faceops.io.shards import split_urls  # noqa: E402
from faceops.sr.job import run_sr  # noqa: E402
from faceops.train import DistInfo, build_model  # noqa: E402
from faceops.train.job import run_training  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "sr.json"
CPU = DistInfo(0, 1, 0, torch.device("cpu"))
DEMO = {"model": "fiwhn_x4", "channels": 8, "steps": 150, "batch_size": 8, "patch": 12, "lr": 0.002}


def run_seed(args: argparse.Namespace, seed: int, root: Path) -> dict[str, float]:
    """PSNR/SSIM-Y of both FIWHN starts and of bicubic, and 14 px verification with bicubic vs SR, for one seed."""
    folder = build_shards(root, args.identities, args.images, seed) / "sample"
    train, test = split_urls(folder, "train"), split_urls(folder, "test")
    out: dict[str, float] = {}
    models = {}
    for start in ("bicubic", "default"):
        began = time.perf_counter()
        result = run_sr(SrParams(**{**DEMO, "steps": args.steps, "skip_init": start}), seed=seed, train_files=train,
                        eval_files=test)  # fmt: skip
        models[start] = build_model(result.record)
        out.update({f"fiwhn_{start}/{k.removeprefix('sr/')}": v for k, v in result.metrics.items()
                    if k.startswith("sr/")})  # fmt: skip
        out.update({k: v for k, v in result.metrics.items() if k.startswith("bicubic/")})
        out[f"fiwhn_{start}/seconds"] = time.perf_counter() - began
    fit = {"sources": [{"name": "sample"}], "steps": args.recognition_steps, "warmup_steps": 12, "batch_size": 32,
           "margin_scale": 32.0, "margin_cos": 0.2, "checkpoint_every": 10_000, "precision": "fp32"}  # fmt: skip
    trained = run_training(PretrainParams(**fit), seed=seed, shard_urls={"sample": train}, dist=CPU,
                           resume_file=root / "rec-last.pt")  # fmt: skip
    images, metas, keys = read_faces(test)
    metrics, _ = lowres_protocol(build_model(trained.record), images, metas, keys, resolutions=[14, 112],
                                 n_pairs=4000, folds=10, seed=seed, batch_size=64, sr_model=models["bicubic"])  # fmt: skip
    out.update({f"recognition/{k.removeprefix('lowres/')}": v for k, v in metrics.items() if k.count("/") >= 2})
    return out


def main() -> int:
    parser = sample_parser(__doc__.splitlines()[0], steps=DEMO["steps"])
    parser.add_argument("--recognition-steps", type=int, default=120)
    args = parser.parse_args()
    runs = seeded_runs(args, run_seed, lambda run: f"FIWHN {run['fiwhn_bicubic/psnr_y']:.2f} dB, bicubic "
                                                   f"{run['bicubic/psnr_y']:.2f} dB ({run['fiwhn_bicubic/seconds']:.0f} s)")

    def cell(key: str, scale: float = 1.0) -> tuple[float, float]:
        return mean_std([run[key] * scale for run in runs])

    rows = [("PSNR-Y (dB)", "psnr_y", 1.0), ("SSIM-Y", "ssim_y", 1.0)]
    print(f"{'held-out faces, x4 (mean ± std, ' + str(len(runs)) + ' seeds)':<40}{'bicubic':>18}"
          f"{'FIWHN bicubic start':>22}{'FIWHN default init':>22}")
    table = {}
    for label, key, scale in rows:
        cells = {arm: cell(f"{arm}/{key}", scale) for arm in ("bicubic", "fiwhn_bicubic", "fiwhn_default")}
        table[key] = cells
        print(f"{label:<40}" + "".join(f"{m:>15.4f} ± {s:.4f}" for m, s in cells.values()))
    print(f"{'verification, 14 px probes (points)':<40}{'bicubic':>18}{'FIWHN (bicubic start)':>22}")
    recognition = {arm: cell(f"recognition/14/{prefix}verif/acc", 100.0) for arm, prefix in (("bicubic", ""),
                                                                                             ("fiwhn", "sr/"))}
    rank1 = {arm: cell(f"recognition/14/{prefix}rank1", 100.0) for arm, prefix in (("bicubic", ""), ("fiwhn", "sr/"))}
    print(f"{'  accuracy':<40}" + "".join(f"{m:>15.2f} ± {s:.2f}" for m, s in recognition.values()))
    print(f"{'  LR-vs-HR rank-1':<40}" + "".join(f"{m:>15.2f} ± {s:.2f}" for m, s in rank1.values()))
    print(f"{'  (112 px, reference)':<40}{cell('recognition/112/verif/acc', 100.0)[0]:>15.2f}")
    gain = table["psnr_y"]["fiwhn_bicubic"][0] - table["psnr_y"]["bicubic"][0]
    goals = {"FIWHN PSNR-Y > bicubic": gain > 0}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "demo": DEMO, "runs": runs, "table": table,
                                   "recognition_14px": {"accuracy": recognition, "rank1": rank1}, "goals": goals,
                                   "environment": environment("torch")}, indent=2))  # fmt: skip
    print(f"SUMMARY sr: FIWHN x4 (8 ch, {args.steps} steps) PSNR-Y {table['psnr_y']['fiwhn_bicubic'][0]:.2f} vs "
          f"bicubic {table['psnr_y']['bicubic'][0]:.2f} dB ({gain:+.2f}); 14 px verification "
          f"{recognition['fiwhn'][0]:.2f} (SR) vs {recognition['bicubic'][0]:.2f} (bicubic) points; "
          f"{'goal met' if gain > 0 else 'NOT MET'}")
    return 0 if gain > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
