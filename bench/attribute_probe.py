"""Are the sample data's labels in the aligned 112x112 pixels? A linear probe on the crops vs the trivial predictors.

Issue 16.4 asks, before blaming SwinFace's heads, whether the attributes the multi-task bench scores can be read off
the aligned face at all. This probe answers it without any network: every face of bench/multitask.py's data set
(same generator, same alignment with the exact landmarks, same JPEG, same identity split: its ``build_shards``)
is shrunk to 24x24 RGB (1,728 numbers, INTER_AREA), standardised on the train split, and a linear model is
fitted per label on the train identities and scored on the held-out ones with the `evaluate` stage's metric
functions (faceops.eval.tasks): logistic regression for each of the 40 attributes and for the expression, ridge
regression for the age. The trivial predictors are the same as the multi-task bench's: the held-out majority
class and the held-out median age (the strongest constants, measured on the test labels themselves).

Second question: how does held-out attribute accuracy grow with the number of training identities? Most labels
are fixed per identity, so the bench's ~42 train identities give ~42 distinct examples of each trait whatever
the photos per identity. A larger data set from the same generator (``--curve-identities`` x 5 photos, split by
the same rule) is probed with its first 42, 120 and all train identities against one fixed held-out set.

Goal (the question of issue 16.4, on every seed): at the multi-task bench's size the probe's mean attribute
accuracy beats the mean majority, its mean balanced accuracy is > 0.5, and the expression and age probes beat
their trivial predictors: can a simple model learn the labels from this much data? Exit 1 otherwise (then the
multi-task heads' goal at this size asks more than a linear model on the pixels reaches). When the multi-task bench's result file is present, its heads'
held-out figures (same seeds, same split) are printed beside the probe's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
from _env import environment
from _sample_seeds import mean_std
from multitask import build_shards, results_file
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from faceops.eval.tasks import age_metrics, attribute_metrics, expression_metrics
from faceops.io.shards import iter_tar_samples, read_index
from faceops.labels import CELEBA_ATTRIBUTES

RESULTS = Path(__file__).resolve().parent / "results" / "attribute_probe.json"
PROBE_SIDE = 24
#: Inverse L2 strength of the logistic probes and the ridge's alpha: strong, since 42 identities are few.
PROBE_C, RIDGE_ALPHA = 0.01, 1000.0
CURVE_PHOTOS = 5


def read_split(shards: Path, split: str) -> tuple[np.ndarray, list[dict]]:
    """Probe features [N, 24*24*3] in [0, 1] and the label dicts of one split, in shard order."""
    folder = shards / "sample"
    features, metas = [], []
    for name in read_index(folder)["splits"][split]["shards"]:
        for sample in iter_tar_samples(folder / name):
            face = cv2.imdecode(np.frombuffer(sample["jpg"], np.uint8), cv2.IMREAD_COLOR_RGB)
            small = cv2.resize(face, (PROBE_SIDE, PROBE_SIDE), interpolation=cv2.INTER_AREA)
            features.append(small.astype(np.float32).ravel() / 255.0)
            metas.append(json.loads(sample["json"]))
    return np.stack(features), metas


def probe(train: tuple[np.ndarray, list[dict]], test: tuple[np.ndarray, list[dict]]) -> dict[str, float]:
    """Fit the linear probes on ``train`` and score them on ``test`` with the evaluate stage's metrics."""
    (x_train, m_train), (x_test, m_test) = train, test
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

    def classify(labels: list[int]) -> np.ndarray:
        if len(set(labels)) < 2:  # a label constant on the train identities: its only possible prediction
            return np.full(len(x_test), labels[0])
        return LogisticRegression(C=PROBE_C, max_iter=500).fit(x_train, labels).predict(x_test)

    attrs = np.stack([classify([m[a] for m in m_train]) for a in CELEBA_ATTRIBUTES], axis=1)
    metrics = attribute_metrics(attrs, [[m[a] for a in CELEBA_ATTRIBUTES] for m in m_test])
    metrics |= expression_metrics(classify([m["expression"] for m in m_train]), [m["expression"] for m in m_test])
    ages = Ridge(alpha=RIDGE_ALPHA).fit(x_train, [m["age"] for m in m_train]).predict(x_test)
    metrics |= age_metrics(ages, [m["age"] for m in m_test])
    metrics["train/identities"] = len({m["identity"] for m in m_train})
    metrics["train/constant_attributes"] = sum(len({m[a] for m in m_train}) == 1 for a in CELEBA_ATTRIBUTES)
    return metrics


def take_identities(split: tuple[np.ndarray, list[dict]], count: int) -> tuple[np.ndarray, list[dict]]:
    """The photos of the first ``count`` identities (in order of appearance) of a split."""
    features, metas = split
    first = list(dict.fromkeys(m["identity"] for m in metas))[:count]
    rows = [i for i, m in enumerate(metas) if m["identity"] in set(first)]
    return features[rows], [metas[i] for i in rows]


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        shards = build_shards(Path(tmp) / "bench", args.identities, args.images, seed)
        at_bench = probe(read_split(shards, "train"), read_split(shards, "test"))
        shards = build_shards(Path(tmp) / "curve", args.curve_identities, CURVE_PHOTOS, seed)
        train, test = read_split(shards, "train"), read_split(shards, "test")
    train_ids = len({m["identity"] for m in train[1]})
    curve = {count: probe(take_identities(train, count), test) for count in sorted({42, 120, train_ids})}
    return {"seed": seed, "bench_size": at_bench, "curve": curve}


def goals_of(m: dict[str, float]) -> dict[str, bool]:
    return {
        "attributes mean acc > mean majority": m["attr/mean_acc"] > m["attr/mean_majority_acc"],
        "attributes mean balanced acc > 0.5": m["attr/mean_balanced_acc"] > 0.5,
        "expression acc > majority": m["expr/acc"] > m["expr/majority_acc"],
        "age MAE < median predictor's": m["age/mae"] < m["age/median_mae"],
    }


def cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.3f} ± {std:.3f}"


def multitask_heads(args: argparse.Namespace) -> list[dict] | None:
    """The multi-task bench's held-out metrics at this data size for these seeds, if its result file has them all."""
    found = results_file(args)
    if not found.exists():
        return None
    record = json.loads(found.read_text())
    if (record["args"]["identities"], record["args"]["images"]) != (args.identities, args.images):
        return None
    runs = {r["seed"]: r["multitask"] for r in record["runs"]}
    return [runs[s] for s in args.seeds] if all(s in runs for s in args.seeds) else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=60, help="bench/multitask.py's default")
    parser.add_argument("--images", type=int, default=20, help="bench/multitask.py's default")
    parser.add_argument("--curve-identities", type=int, default=480)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    runs = []
    for seed in args.seeds:
        runs.append(run_seed(args, seed))
        print(f"seed {seed}: goals {'met' if all(goals_of(runs[-1]['bench_size']).values()) else 'MISSED'}", flush=True)

    probes = [r["bench_size"] for r in runs]
    heads = multitask_heads(args)
    print(f"\nheld-out identities at bench/multitask.py's size ({args.identities} identities x {args.images} photos, "
          f"~{probes[0]['train/identities']} train identities), mean ± std over seeds {args.seeds}")  # fmt: skip
    print(f"{'label':<26}{'pixel probe':>16}{'trivial':>16}{'SwinFace heads':>17}")
    rows = (("attributes mean acc", "attr/mean_acc", "attr/mean_majority_acc"),
            ("attributes mean balanced", "attr/mean_balanced_acc", None),
            ("attributes above majority", "attr/n_above_majority", None),
            ("expression acc", "expr/acc", "expr/majority_acc"), ("age MAE", "age/mae", "age/median_mae"))  # fmt: skip
    for label, key, trivial in rows:
        base = cell([p[trivial] for p in probes]) if trivial else ("0.500" if "balanced" in key else "-")
        theirs = cell([h[key] for h in heads]) if heads else "(no result file)"
        print(f"{label:<26}{cell([p[key] for p in probes]):>16}{base:>16}{theirs:>17}")
    print(f"attributes constant on the train identities: {[p['train/constant_attributes'] for p in probes]} of 40")
    print(f"\n{'attribute':<22}{'probe':>8}{'majority':>10}{'balanced':>10}{'SwinFace':>10}   (mean over seeds)")
    for name in CELEBA_ATTRIBUTES:
        cols = [np.mean([p[f"attr/{name}/{k}"] for p in probes]) for k in ("acc", "majority_acc", "balanced_acc")]
        theirs = f"{np.mean([h[f'attr/{name}/acc'] for h in heads]):>10.3f}" if heads else f"{'-':>10}"
        print(f"{name:<22}{cols[0]:>8.3f}{cols[1]:>10.3f}{cols[2]:>10.3f}{theirs}")

    print(f"\nattributes vs train identities ({args.curve_identities} identities x {CURVE_PHOTOS} photos; "
          "one held-out set for every size), mean ± std over seeds")
    print(f"{'train identities':>18}{'mean acc':>16}{'majority':>16}{'balanced':>16}")
    for index in range(len(runs[0]["curve"])):
        points = [list(r["curve"].values())[index] for r in runs]
        print(f"{cell([p['train/identities'] for p in points]):>18}{cell([p['attr/mean_acc'] for p in points]):>16}"
              f"{cell([p['attr/mean_majority_acc'] for p in points]):>16}"
              f"{cell([p['attr/mean_balanced_acc'] for p in points]):>16}")  # fmt: skip

    goals = {name: all(goals_of(p)[name] for p in probes) for name in goals_of(probes[0])}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "runs": runs, "goals_on_every_seed": goals,
                                   "environment": environment("sklearn", "cv2")}, indent=2, default=str))  # fmt: skip
    missed = [name for name, ok in goals.items() if not ok]
    last = [list(r["curve"].values())[-1] for r in runs]
    figure = {key: cell([p[key] for p in probes]) for key in ("attr/mean_acc", "attr/mean_majority_acc",
                                                              "attr/mean_balanced_acc")}  # fmt: skip
    print(f"SUMMARY attribute_probe: 24x24 pixel probe at the bench's size: attributes {figure['attr/mean_acc']} "
          f"vs majority {figure['attr/mean_majority_acc']} (balanced {figure['attr/mean_balanced_acc']}); "
          f"with ~{last[0]['train/identities']} train identities {cell([p['attr/mean_acc'] for p in last])}; "
          f"probe beats every trivial predictor on every seed: {'yes' if not missed else 'NO ' + str(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
