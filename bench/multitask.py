"""Every SwinFace analysis head vs its trivial predictor, and multi-task vs recognition-only (tiny config, CPU).

Per seed (default 0, 1, 2): builds the sample data set with that seed in a temporary workspace (generate -> align
with the exact landmarks -> shards, through the library), trains the multi-task model and the recognition-only model
from scratch with the real `pretrain`/`train` stage code for the same steps and batch size, and scores both with the
real `evaluate` stage on the held-out identities (the test split).

Trivial predictors, measured in the same run on the same held-out labels (faceops.eval.tasks): the majority class
(expression, gender, each attribute) and the median age, the strongest constant predictions. Balanced accuracy (mean
recall per class; any constant scores 1/K) is printed beside every accuracy, since a majority accuracy near 1 hides a
head that never predicts the rare class. The training loss of every head is printed at a few points of the run next
to the loss of the best constant (the train labels' entropy), from the `train` stage's step log.

Goal (issue 16), on every seed: expression and gender accuracy > majority; mean attribute accuracy > mean majority
and mean attribute balanced accuracy > 0.5; age MAE < the median predictor's. Verification is reported for both
models (SwinFace claims multi-task training helps recognition; whether it does at this scale is what the table shows).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import yaml
from _env import environment, sized_results
from _sample_seeds import mean_std, sample_parser, seeded_runs

from faceops.align import align_face
from faceops.data.split import assign_split
from faceops.io.shards import ShardSample, iter_tar_samples, read_index, write_index, write_shards
from faceops.labels import CELEBA_ATTRIBUTES, EXPRESSIONS
from faceops.sample import generate_sample

RESULTS = Path(__file__).resolve().parent / "results" / "multitask.json"
#: (row label, metric key, the trivial predictor's metric key or its constant score) of the per-head table.
ROWS = (("expression acc", "expr/acc", "expr/majority_acc"),
        ("expression balanced", "expr/balanced_acc", 1 / len(EXPRESSIONS)),
        ("gender acc", "gender/acc", "gender/majority_acc"), ("gender balanced", "gender/balanced_acc", 0.5),
        ("attributes mean acc", "attr/mean_acc", "attr/mean_majority_acc"),
        ("attributes mean balanced", "attr/mean_balanced_acc", 0.5),
        ("attributes above majority", "attr/n_above_majority", None), ("age MAE", "age/mae", "age/median_mae"),
        ("verification acc", "verif/acc", None), ("verification AUC", "verif/auc", None))  # fmt: skip
CURVES = ("Expression", "Male", "Age", "attributes")  # loss curves printed (attributes: mean of the 40)


def build_shards(root: Path, identities: int, per_identity: int, seed: int) -> Path:
    """Sample faces aligned with their exact landmarks, sharded train/val/test by identity."""
    splits: dict[str, list[ShardSample]] = {}
    for image in generate_sample(identities, per_identity, seed=seed):
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(image.jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        face = align_face(rgb, np.asarray(image.labels["landmarks"]), size=112)
        jpg = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        key = f"sample_{sum(map(len, splits.values())):06d}"
        split = assign_split(image.labels["identity"], {"train": 0.7, "val": 0.1, "test": 0.2})
        splits.setdefault(split, []).append(
            ShardSample(key=key, jpg=jpg, meta={**image.labels, "id": key, "source": "sample"})
        )
    out = root / "shards" / "sample"
    index = {"format": 1, "source": "sample", "splits": {}, "samples": 0}
    for split, samples in sorted(splits.items()):
        infos = write_shards(samples, out, split=split, maxcount=200)
        index["splits"][split] = {"shards": [i.name for i in infos], "samples": len(samples),
                                  "identities": len({s.meta["identity"] for s in samples})}  # fmt: skip
        index["samples"] += len(samples)
    write_index(out, index)
    return root / "shards"


def constant_losses(shards: Path) -> dict[str, float]:
    """Cross-entropy of the best constant prediction on the train split: the labels' entropy (nats)."""
    folder = shards / "sample"
    metas = [json.loads(s["json"]) for name in read_index(folder)["splits"]["train"]["shards"]
             for s in iter_tar_samples(folder / name)]  # fmt: skip

    def entropy(values: list) -> float:
        p = np.asarray(list(Counter(values).values()), dtype=np.float64) / len(values)
        return float(-(p * np.log(p)).sum())

    attrs = [entropy([m[a] for m in metas]) for a in CELEBA_ATTRIBUTES]
    return {"Expression": entropy([m["expression"] for m in metas]), "Male": entropy([m["Male"] for m in metas]),
            "attributes": float(np.mean(attrs))}  # fmt: skip


def loss_curve(live: Path, steps: int) -> dict[str, list[float]]:
    """Each head's logged training loss at 5%, 25%, 50% and 100% of the run (the step log's ``loss/<head>``)."""

    def read(head: str) -> dict[int, float]:
        with (live / "plots" / "metrics" / "loss" / f"{head}.tsv").open() as f:
            return {int(r["step"]): float(r[head]) for r in csv.DictReader(f, delimiter="\t")}

    logs = {head: read(head) for head in ("Expression", "Male", "Age", *CELEBA_ATTRIBUTES)}
    at = [max(1, round(steps * f)) for f in (0.05, 0.25, 0.5, 1.0)]
    curves = {head: [logs[head][s] for s in at] for head in ("Expression", "Male", "Age")}
    curves["attributes"] = [float(np.mean([logs[a][s] for a in CELEBA_ATTRIBUTES])) for s in at]
    return {"steps": at, **curves}


def run_variant(root: Path, shards: Path, name: str, model: str, steps: int, seed: int) -> tuple[dict, float]:
    """Train ``model`` from scratch with the real stage code and evaluate it with the `evaluate` stage.

    A ``*_rec`` model is the `pretrain` stage's recognition-only network; the multi-task model is the
    `train` stage's, with pre-training disabled so both start from scratch with the same budget.
    """
    from stages import evaluate, pretrain, train

    work = root / name
    for folder in ("verification", "imported"):
        (work / folder).mkdir(parents=True)
    fit = {"model": model, "steps": steps, "warmup_steps": max(1, steps // 10), "batch_size": 32,
           "margin_scale": 32, "margin_cos": 0.2, "backbone_lr_scale": 1.0, "checkpoint_every": steps,
           "log_every": max(1, steps // 20)}  # fmt: skip
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
        train.main([*common, "--pretrained", str(work / "pretrain"), "--imported", str(work / "imported"), "--out",
                    str(work / "model"), "--ckpt", str(work / "ckpt"), "--metrics", str(work / "train.json"),
                    "--live", str(work / "live")])  # fmt: skip
    seconds = time.perf_counter() - began
    model_dir = work / ("pretrain" if recognition_only else "model")
    evaluate.main([*common, "--model", str(model_dir), "--verification", str(work / "verification"),
                   "--metrics", str(work / "eval.json"), "--plots", str(work / "plots")])  # fmt: skip
    metrics = {k.removeprefix("sample/"): v for k, v in json.loads((work / "eval.json").read_text()).items()}
    if not recognition_only:
        metrics["loss_curves"] = loss_curve(work / "live", steps)
    return metrics, seconds


def goals_of(m: dict) -> dict[str, bool]:
    """Issue 16's goal on one seed's multi-task metrics."""
    return {
        "expression acc > majority": m["expr/acc"] > m["expr/majority_acc"],
        "gender acc > majority": m["gender/acc"] > m["gender/majority_acc"],
        "attributes mean acc > mean majority": m["attr/mean_acc"] > m["attr/mean_majority_acc"],
        "attributes mean balanced acc > 0.5": m["attr/mean_balanced_acc"] > 0.5,
        "age MAE < median predictor's": m["age/mae"] < m["age/median_mae"],
    }


def run_seed(args, seed: int, root: Path) -> dict:
    shards = build_shards(root, args.identities, args.images, seed)
    multi, t_multi = run_variant(root, shards, "multitask", "swinface_cpu", args.steps, seed)
    rec, t_rec = run_variant(root, shards, "recognition", "swinface_cpu_rec", args.steps, seed)
    return {
        "seed": seed,
        "multitask": multi,
        "recognition_only": rec,
        "goals": goals_of(multi),
        "constant_losses": constant_losses(shards),
        "train_seconds": {"multitask": t_multi, "recognition_only": t_rec},
    }


def results_file(args) -> Path:
    """``multitask.json`` for the default data size; another size writes beside it and never replaces it."""
    defaults = sample_parser("", steps=600).parse_args([])
    return sized_results(RESULTS, args.identities, args.images, (defaults.identities, defaults.images))


def _cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.3f} ± {std:.3f}"


def main() -> int:
    args = sample_parser(__doc__.splitlines()[0], steps=600).parse_args()
    runs = seeded_runs(args, run_seed, lambda r: f"goals {'met' if all(r['goals'].values()) else 'MISSED'}, "
                       f"train {r['train_seconds']['multitask']:.0f} s")  # fmt: skip
    multi = [r["multitask"] for r in runs]
    print(f"\nheld-out identities, mean ± std over seeds {args.seeds}")
    print(f"{'head':<28}{'multi-task':>16}{'trivial':>16}{'recognition-only':>18}")
    for label, key, trivial in ROWS:
        rec = [r["recognition_only"][key] for r in runs if key in r["recognition_only"]]
        base = (
            _cell([m[trivial] for m in multi])
            if isinstance(trivial, str)
            else "-"
            if trivial is None
            else f"{trivial:.3f}"
        )
        print(f"{label:<28}{_cell([m[key] for m in multi]):>16}{base:>16}{_cell(rec) if rec else '-':>18}")
    print(f"\n{'attribute':<22}{'acc':>8}{'majority':>10}{'balanced':>10}   (mean over seeds)")
    for name in CELEBA_ATTRIBUTES:
        cols = [np.mean([m[f"attr/{name}/{k}"] for m in multi]) for k in ("acc", "majority_acc", "balanced_acc")]
        print(f"{name:<22}{cols[0]:>8.3f}{cols[1]:>10.3f}{cols[2]:>10.3f}")
    print(f"\ntraining loss (mean over seeds) at steps {multi[0]['loss_curves']['steps']} vs the best constant's")
    for head in CURVES:
        curve = np.mean([m["loss_curves"][head] for m in multi], axis=0)
        const = np.mean([r["constant_losses"][head] for r in runs]) if head != "Age" else None
        print(f"{head:<14}{' '.join(f'{v:8.3f}' for v in curve)}   constant {'-' if const is None else f'{const:.3f}'}")
    goals = {name: all(r["goals"][name] for r in runs) for name in runs[0]["goals"]}
    results = results_file(args)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"args": vars(args), "runs": runs, "goals_on_every_seed": goals,
                                   "environment": environment("torch", "timm")}, indent=2, default=str))  # fmt: skip
    missed = [name for name, ok in goals.items() if not ok]
    print(
        f"SUMMARY multitask: attributes acc {_cell([m['attr/mean_acc'] for m in multi])} vs majority "
        f"{_cell([m['attr/mean_majority_acc'] for m in multi])}, balanced {_cell([m['attr/mean_balanced_acc'] for m in multi])}; "
        f"expression {_cell([m['expr/acc'] for m in multi])} vs {_cell([m['expr/majority_acc'] for m in multi])}; "
        f"age MAE {_cell([m['age/mae'] for m in multi])} vs {_cell([m['age/median_mae'] for m in multi])}; "
        f"every head beats its trivial predictor on every seed: {'yes' if not missed else 'NO ' + str(missed)}"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
