"""Benchmark: do SSPCM pseudo-landmarks beat those of one supervised teacher, with 10 % labels?

Question: on faces with 5 exact landmarks, 10 % labelled and 90 % unlabelled, what is the NME
(inter-ocular) of the pseudo-labels written for the unlabelled images by (a) one heatmap network
trained on the labelled images only, (b) SSPCM with the position-inconsistency filter (the default)
and (c) SSPCM without it? All runs use the same tiny SimpleBaseline network (``sspcm_tiny``), the
same labelled batches, schedule and optimiser-step count, and the same seeds; only (b)/(c) see the
unlabelled images. The SSPCM pseudo-label is the student NET3's prediction (decided before the
first run); the teachers' average is printed for information.

Data: ``faceops.sample.generate_sample`` photos, each cropped loosely around its landmarks (square
side 3.5x their mean distance from the centroid, seeded +-10 % shift and +-15 % size), resized to
64x64 (heatmaps 16x16, stride 4).

Goal: SSPCM (filter on) has a lower NME than the supervised teacher; exit 1 otherwise.

COCO OKS AP: ``--coco DIR`` instead scores COCO person keypoints with pycocotools: the ground truth
``DIR/test_coco.json`` against itself (AP must be 1) and against copies with Gaussian noise of 2, 5,
10 px (AP must fall monotonically), a check of the reader and the metric, not of a model:
``python bench/keypoints.py --coco ../shared/data/coco-pose-sample/coco``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from _env import environment

from faceops.pseudo import (
    SSPCMConfig,
    build_nets,
    fit_sspcm,
    fit_supervised,
    inter_ocular,
    nme,
    oks_ap,
    pck,
    predict_keypoints,
)
from faceops.sample import generate_sample

RESULTS = Path(__file__).resolve().parent / "results" / "keypoints.json"
SIZE = 64
MODEL = "sspcm_tiny"


def face_crops(identities: int, per_identity: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Loose square crops [N, 64, 64, 3] uint8 (RGB) and their landmarks [N, 5, 2] in crop pixels."""
    rng = np.random.default_rng(seed + 1)
    crops, marks = [], []
    for image in generate_sample(identities, per_identity, seed=seed):
        bgr = cv2.imdecode(np.frombuffer(image.jpeg, np.uint8), cv2.IMREAD_COLOR)
        lm = np.asarray(image.labels["landmarks"], dtype=np.float64)
        centre = lm.mean(axis=0)
        side = 3.5 * np.linalg.norm(lm - centre, axis=1).mean() * rng.uniform(0.85, 1.15)
        centre = centre + rng.uniform(-0.1, 0.1, 2) * side
        scale = SIZE / side
        m = np.array([[scale, 0, SIZE / 2 - scale * centre[0]], [0, scale, SIZE / 2 - scale * centre[1]]])
        crops.append(cv2.cvtColor(cv2.warpAffine(bgr, m, (SIZE, SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE), cv2.COLOR_BGR2RGB))
        # warpAffine maps pixel centres: x' = s x + t exactly, so landmarks move with the same matrix
        marks.append(lm @ m[:, :2].T + m[:, 2])
    return np.stack(crops), np.stack(marks)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-0.5, 0.5]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.float32) / 255.0 - 0.5


def scores(pred: torch.Tensor, gt: np.ndarray) -> dict[str, float]:
    p = pred.numpy().astype(np.float64)
    return {"nme": nme(p, gt), "pck@0.1": pck(p, gt, inter_ocular(gt), alpha=0.1), "pck@0.2": pck(p, gt, inter_ocular(gt), alpha=0.2)}


def run_faces(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    crops, marks = face_crops(args.identities, args.per_identity, args.seed)
    n = len(crops)
    order = np.random.default_rng(args.seed + 2).permutation(n)
    n_lab = max(1, round(args.labelled * n))
    lab, unl = order[:n_lab], order[n_lab:]
    images, unlabelled = to_tensor(crops[lab]), to_tensor(crops[unl])
    points, visible = torch.from_numpy(marks[lab]).to(torch.float32), torch.ones(n_lab, 5)
    gt = marks[unl]
    steps = -(-len(unl) // args.batch_size)
    base = SSPCMConfig(
        epochs=args.epochs, batch_size=args.batch_size, cut_half_size=(3, 6), cut_jitter=2.5,
    )  # fmt: skip  (Cut-Occlude sizes scaled from 256x192 to 64x64)
    print(f"data: {n} crops {SIZE}x{SIZE}, {n_lab} labelled, {len(unl)} unlabelled; {args.epochs} epochs x {steps} steps "
          f"({time.perf_counter() - t0:.1f}s)", flush=True)  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}

    t = time.perf_counter()
    net = build_nets(MODEL, 1, seed=args.seed, num_joints=5)[0]
    sup = fit_supervised(net, images, points, visible, steps_per_epoch=steps, cfg=base, seed=args.seed)
    rows["supervised teacher"] = {**scores(predict_keypoints(sup.nets, unlabelled)[0], gt), "seconds": time.perf_counter() - t}
    print(f"supervised done ({rows['supervised teacher']['seconds']:.0f}s)", flush=True)
    for name, filt in (("SSPCM, filter on", True), ("SSPCM, filter off", False)):
        t = time.perf_counter()
        nets = build_nets(MODEL, 3, seed=args.seed, num_joints=5)
        cfg = SSPCMConfig(**{**base.__dict__, "inconsistency_filter": filt})
        fit = fit_sspcm(nets, images, points, visible, unlabelled, cfg=cfg, seed=args.seed)
        rows[name] = {
            **scores(predict_keypoints(fit.nets[2:], unlabelled)[0], gt),
            "teachers_nme": scores(predict_keypoints(fit.nets[:2], unlabelled)[0], gt)["nme"],
            "kept_last_epoch": fit.history[-1]["kept"],
            "seconds": time.perf_counter() - t,
        }
        print(f"{name} done ({rows[name]['seconds']:.0f}s)", flush=True)

    print(f"\n{'method':<20} {'NME':>8} {'PCK@0.1':>8} {'PCK@0.2':>8} {'teachers NME':>13} {'kept':>6} {'s':>6}")
    for name, r in rows.items():
        extra = f"{r['teachers_nme']:>13.4f} {r['kept_last_epoch']:>6.2f}" if "teachers_nme" in r else f"{'-':>13} {'-':>6}"
        print(f"{name:<20} {r['nme']:>8.4f} {r['pck@0.1']:>8.3f} {r['pck@0.2']:>8.3f} {extra} {r['seconds']:>6.0f}")
    baseline, ours = rows["supervised teacher"]["nme"], rows["SSPCM, filter on"]["nme"]
    ok = ours < baseline
    result = {
        "question": "NME of pseudo-landmarks on the unlabelled 90 %: supervised teacher vs SSPCM (student NET3)",
        "args": vars(args), "n_labelled": n_lab, "n_unlabelled": len(unl), "steps_per_epoch": steps,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in base.__dict__.items()},
        "results": rows, "goal": "SSPCM (filter on) NME < supervised NME", "goal_met": ok,
        "env": environment("torch", "timm", "numpy", torch_threads=args.threads),
    }  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nSSPCM NME {ours:.4f} vs supervised {baseline:.4f} ({(1 - ours / baseline) * 100:+.1f} % better): "
          f"{'goal met' if ok else 'GOAL NOT MET'}")  # fmt: skip
    return 0 if ok else 1


def run_coco(root: Path, seed: int) -> int:
    gt = json.loads((root / "test_coco.json").read_text(encoding="utf-8"))
    persons = [a for a in gt["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)]
    rng = np.random.default_rng(seed)
    aps = []
    for noise in (0.0, 2.0, 5.0, 10.0):
        dets = []
        for a in persons:
            kps = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
            kps[:, :2] += rng.normal(0, noise, (len(kps), 2)) if noise else 0
            dets.append({"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": kps.ravel().tolist(), "score": 1.0})
        stats = oks_ap(gt, dets)
        aps.append(stats["AP"])
        print(f"noise {noise:>4.1f} px: AP {stats['AP']:.3f}  AP50 {stats['AP50']:.3f}  AR {stats['AR']:.3f}")
    ok = aps[0] == 1.0 and all(a >= b for a, b in zip(aps, aps[1:])) and aps[-1] < 1.0
    print(f"{len(gt['images'])} images, {len(persons)} persons: {'ok' if ok else 'FAILED'} (AP 1 at 0 px, falling with noise)")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=30)
    parser.add_argument("--per-identity", type=int, default=10)
    parser.add_argument("--labelled", type=float, default=0.1, help="labelled fraction")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--coco", type=Path, help="score COCO OKS AP on DIR/test_coco.json instead")
    args = parser.parse_args(argv)
    if args.coco is not None:
        return run_coco(args.coco, args.seed)
    return run_faces(args)


if __name__ == "__main__":
    sys.exit(main())
