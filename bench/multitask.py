"""Multi-task SwinFace vs the same backbone trained on recognition only (tiny config, CPU, seeded).

Builds the sample data set in a temporary workspace (generate -> align with the exact landmarks -> shards,
through the library), then trains both variants with the real `train` stage code for the same number of
steps and batch size and evaluates both with the real `evaluate` stage on the held-out identities.

Printed side by side: verification accuracy/AUC and every task metric; for tasks the recognition-only model
has no head, so its column shows the trivial predictor (majority class / mean age from the train split).
Goal: the multi-task model beats the trivial predictor on expression accuracy, mean attribute accuracy,
gender accuracy and age MAE. Verification is reported for both (SwinFace claims multi-task training helps
recognition; whether it does at this scale is what the table shows).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import yaml

from _env import environment
from faceops.align import align_face
from faceops.data.split import assign_split
from faceops.io.shards import ShardSample, iter_tar_samples, read_index, write_index, write_shards
from faceops.labels import CELEBA_ATTRIBUTES
from faceops.sample import generate_sample

RESULTS = Path(__file__).resolve().parent / "results" / "multitask.json"


def build_shards(root: Path, identities: int, per_identity: int, seed: int) -> Path:
    """Sample faces aligned with their exact landmarks, sharded train/val/test by identity."""
    splits: dict[str, list[ShardSample]] = {}
    for image in generate_sample(identities, per_identity, seed=seed):
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(image.jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        face = align_face(rgb, np.asarray(image.labels["landmarks"]), size=112)
        jpg = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        key = f"sample_{len(sum(splits.values(), [])):06d}"
        split = assign_split(image.labels["identity"], {"train": 0.7, "val": 0.1, "test": 0.2})
        splits.setdefault(split, []).append(ShardSample(key=key, jpg=jpg, meta={**image.labels, "id": key, "source": "sample"}))
    out = root / "shards" / "sample"
    index = {"format": 1, "source": "sample", "splits": {}, "samples": 0}
    for split, samples in sorted(splits.items()):
        infos = write_shards(samples, out, split=split, maxcount=200)
        index["splits"][split] = {"shards": [i.name for i in infos], "samples": len(samples),
                                  "identities": len({s.meta["identity"] for s in samples})}  # fmt: skip
        index["samples"] += len(samples)
    write_index(out, index)
    return root / "shards"


def trivial_baseline(shards: Path) -> dict[str, float]:
    """Majority class / mean age learnt on the train split, scored on the test split."""
    index = read_index(shards / "sample")
    metas = {split: [json.loads(s["json"])
                     for name in index["splits"][split]["shards"] for s in iter_tar_samples(shards / "sample" / name)]
             for split in ("train", "test")}  # fmt: skip
    train, test = metas["train"], metas["test"]

    def majority_acc(key: str) -> float:
        mode = Counter(m[key] for m in train).most_common(1)[0][0]
        return float(np.mean([m[key] == mode for m in test]))

    mean_age = float(np.mean([m["age"] for m in train]))
    return {
        "expr/acc": majority_acc("expression"),
        "gender/acc": majority_acc("Male"),
        "attr/mean_acc": float(np.mean([majority_acc(a) for a in CELEBA_ATTRIBUTES])),
        "age/mae": float(np.mean([abs(m["age"] - mean_age) for m in test])),
    }


def run_variant(root: Path, shards: Path, name: str, model: str, steps: int, seed: int) -> tuple[dict, float]:
    """Train ``model`` from scratch with the real stage code and evaluate it with the `evaluate` stage.

    A ``*_rec`` model is the `pretrain` stage's recognition-only network; the multi-task model is the
    `train` stage's, with pre-training disabled so both start from scratch with the same budget.
    """
    from stages import evaluate, pretrain, train

    work = root / name
    (work / "verification").mkdir(parents=True)
    fit = {"model": model, "steps": steps, "warmup_steps": max(1, steps // 10), "batch_size": 32,
           "margin_scale": 32, "margin_cos": 0.2, "backbone_lr_scale": 1.0, "checkpoint_every": steps}  # fmt: skip
    recognition_only = model.endswith("_rec")
    params = {"base": {"seed": seed}, "pretrain": fit if recognition_only else {"enabled": False},
              "evaluate": {"sources": ["sample"], "n_pairs": 3000}}  # fmt: skip
    if not recognition_only:
        params["train"] = fit
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    common = ["--params", str(work / "params.yaml"), "--shards", str(shards)]
    began = time.perf_counter()
    pretrain.main([*common, "--out", str(work / "pretrain"), "--ckpt", str(work / "ckpt"),
                   "--metrics", str(work / "pretrain.json"), "--live", str(work / "pretrain_live")])  # fmt: skip
    if not recognition_only:
        train.main([*common, "--pretrained", str(work / "pretrain"), "--out", str(work / "model"), "--ckpt",
                    str(work / "ckpt"), "--metrics", str(work / "train.json"), "--live", str(work / "live")])  # fmt: skip
    seconds = time.perf_counter() - began
    model_dir = work / ("pretrain" if recognition_only else "model")
    evaluate.main([*common, "--model", str(model_dir), "--verification", str(work / "verification"),
                   "--metrics", str(work / "eval.json"), "--plots", str(work / "plots")])  # fmt: skip
    metrics = json.loads((work / "eval.json").read_text())
    return {k.removeprefix("sample/"): v for k, v in metrics.items()}, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=60)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shards = build_shards(root, args.identities, args.images, args.seed)
        trivial = trivial_baseline(shards)
        multi, t_multi = run_variant(root, shards, "multitask", "swinface_cpu", args.steps, args.seed)
        rec, t_rec = run_variant(root, shards, "recognition", "swinface_cpu_rec", args.steps, args.seed)
    rows = ["verif/acc", "verif/auc", "verif/tar@far=1e-2", "expr/acc", "gender/acc", "attr/mean_acc", "age/mae",
            "age/eps", "group/mean", "group/ser"]  # fmt: skip
    print(f"{'metric':<22}{'multi-task':>12}{'recognition-only':>18}{'trivial':>10}")
    for key in rows:
        fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "-"  # noqa: E731
        print(f"{key:<22}{fmt(multi.get(key)):>12}{fmt(rec.get(key)):>18}{fmt(trivial.get(key)):>10}")
    print(f"{'train seconds':<22}{t_multi:>12.1f}{t_rec:>18.1f}")
    goals = {
        "expr/acc > majority": multi["expr/acc"] > trivial["expr/acc"],
        "gender/acc > majority": multi["gender/acc"] > trivial["gender/acc"],
        "attr/mean_acc > majority": multi["attr/mean_acc"] > trivial["attr/mean_acc"],
        "age/mae < mean-age predictor": multi["age/mae"] < trivial["age/mae"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "multitask": multi, "recognition_only": rec, "trivial": trivial,
                                   "train_seconds": {"multitask": t_multi, "recognition_only": t_rec}, "goals": goals,
                                   "environment": environment("torch", "timm")}, indent=2, default=str))  # fmt: skip
    missed = [name for name, ok in goals.items() if not ok]
    print(f"SUMMARY multitask: verif acc {multi['verif/acc']:.3f} (multi-task) vs {rec['verif/acc']:.3f} "
          f"(recognition-only); tasks vs trivial: {'all beaten' if not missed else 'NOT MET ' + str(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
