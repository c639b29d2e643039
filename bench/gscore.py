"""Benchmark: does a label-free Gscore track the true AUROC of an OOD detector on Gbench-mini?

Question: on Gbench-mini (``faceops.ood.gbench``: a small CNN trained on 12 synthetic people; 108
incoming sets per seed, each the in-distribution test faces mixed at an OOD share of 0.2/0.4/0.6/0.8 with
one of 27 shifted pools: other people, an unseen skin-tone group, and blur, low resolution, noise, occlusion,
other-domain blends at 5 severities), how closely does each Gscore variant (``faceops.ood.gscore``, our
reconstructions: mixture, pseudo_label, threshold) follow the detector's true AUROC? A line
AUROC ~ a * Gscore + b is fitted on half of the sets; Spearman and Pearson of Gscore vs AUROC and the RMSE
of the fitted line are measured on the other half. The OOD score is the ``monitor`` stage's default
(``knn`` on the embedding); the other four scores are reported too.

Baselines, measured in the same run on the same sets: ``constant`` (predict the training sets' mean
AUROC: the RMSE to beat; no ranking) and ``reference_auroc`` (the AUROC of the reference set against the
whole unlabeled incoming set, the naive label-free proxy).

Goal: the best Gscore variant's mean held-out Spearman (knn score) >= 0.8 over the seeds; exit 1 otherwise.

Run: ``OMP_NUM_THREADS=1 python bench/gscore.py`` (about 3 min per seed on a quiet 2-core machine).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _env import environment
from _seeded import run_seeds

from faceops.ood import OOD_SCORES, ScoreInputs, auroc, fit_score
from faceops.ood.gbench import evaluate_gbench, gbench_images, gscore_estimators, mix_sets
from faceops.robust.surrogate import FEATURES, LOGITS, train_classifier
from faceops.train.batch import normalize_images

RESULTS = Path(__file__).resolve().parent / "results" / "gscore.json"
SHARES = (0.2, 0.4, 0.6, 0.8)
SET_SIZE = 200
HEADLINE_SCORE = "knn"
GOAL = 0.8


@torch.no_grad()
def _outputs(model: torch.nn.Module, images: np.ndarray) -> ScoreInputs:
    x = normalize_images(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))))
    out = model(x)
    return ScoreInputs(logits=out[LOGITS].numpy(), features=out[FEATURES].numpy())


def _estimators() -> dict:
    return {**gscore_estimators(), "reference_auroc": lambda x, ref: auroc(ref, x)}


def run_seed(seed: int, steps: int) -> dict:
    """Every score's meta-evaluation on one Gbench-mini instance."""
    start = time.perf_counter()
    images = gbench_images(seed=seed)
    model = train_classifier(images.train, images.train_labels, steps=steps, seed=seed)
    train, reference = _outputs(model, images.train), _outputs(model, images.reference)
    accuracy = float((reference.logits.argmax(1) == np.repeat(np.arange(12), len(images.reference) // 12)).mean())
    inside = _outputs(model, images.in_distribution)
    pools = {name: _outputs(model, faces) for name, faces in images.shifted.items()}
    out = {"seconds": 0.0, "reference_accuracy": accuracy, "scores": {}}
    for name in OOD_SCORES:
        score = fit_score(name, train, images.train_labels, k=10)
        sets = mix_sets(score(inside), {p: score(v) for p, v in pools.items()}, shares=SHARES, size=SET_SIZE, seed=seed)
        result = evaluate_gbench(sets, score(reference), estimators=_estimators(), seed=seed)
        true = np.array([s.true_auroc() for s in sets])
        out["scores"][name] = {"sets": len(sets), "true_auroc_range": [float(true.min()), float(true.max())], **result}
    out["seconds"] = time.perf_counter() - start
    return out


def _summary(runs: list[dict], score: str, method: str, key: str) -> tuple[float, float]:
    values = [r["scores"][score][method][key] for r in runs]
    return float(np.mean(values)), float(np.std(values))


def main() -> int:
    args, runs = run_seeds(
        __doc__.split("\n")[0],
        run_seed,
        lambda run: f"classifier accuracy on the reference {run['reference_accuracy']:.3f}",
    )
    methods = ("mixture", "pseudo_label", "threshold", "reference_auroc", "constant")
    print(f"\nGbench-mini, {HEADLINE_SCORE} score, held-out sets ({runs[0]['scores'][HEADLINE_SCORE]['threshold']['test_sets']}"
          f" of {runs[0]['scores'][HEADLINE_SCORE]['sets']} per seed), mean +- std over {len(runs)} seeds")  # fmt: skip
    print(f"{'estimator':<18}{'Spearman':>18}{'Pearson':>18}{'RMSE':>18}")
    for method in methods:
        cells = [_summary(runs, HEADLINE_SCORE, method, key) for key in ("spearman", "pearson", "rmse")]
        print(f"{method:<18}" + "".join(f"{m:>11.3f} +- {s:.3f}" for m, s in cells))
    print("\nSpearman (mean over seeds) of every estimator with every OOD score")
    print(f"{'score':<14}" + "".join(f"{m:>17}" for m in methods[:4]))
    for score in OOD_SCORES:
        print(f"{score:<14}" + "".join(f"{_summary(runs, score, m, 'spearman')[0]:>17.3f}" for m in methods[:4]))
    best = max(("mixture", "pseudo_label", "threshold"), key=lambda m: _summary(runs, HEADLINE_SCORE, m, "spearman")[0])
    best_mean, best_std = _summary(runs, HEADLINE_SCORE, best, "spearman")
    ok = best_mean >= GOAL
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "question": "held-out Spearman/RMSE of label-free Gscore vs true AUROC on Gbench-mini",
        "seeds": args.seeds, "steps": args.steps, "set_size": SET_SIZE, "shares": SHARES, "headline_score": HEADLINE_SCORE,
        "runs": runs, "best_variant": best, "best_spearman": [best_mean, best_std],
        "goal": f"best variant mean Spearman >= {GOAL}", "goal_met": ok,
        "env": environment("torch", "numpy", "scipy", torch_threads=args.threads),
    }, indent=2) + "\n")  # fmt: skip
    print(f"\nSUMMARY gscore: best Gscore variant ({HEADLINE_SCORE} score): {best}, Spearman {best_mean:.3f} +- {best_std:.3f} "
          f"(goal >= {GOAL}: {'met' if ok else 'NOT met'}); reference_auroc baseline "
          f"{_summary(runs, HEADLINE_SCORE, 'reference_auroc', 'spearman')[0]:.3f}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
