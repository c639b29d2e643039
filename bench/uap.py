"""Benchmark: does SGA's universal perturbation fool a classifier more than SPGD's and random noise's?

Question: against a small CNN (``cnn_tiny``, ``faceops.robust.surrogate``) trained to tell 10 synthetic
people apart (32x32 aligned faces, 50 photos each), what share of 500 held-out photos change their
prediction under a perturbation learnt on the 500 training photos by (a) SGA (``faceops.robust.uap``:
B 50, b 5, K 2 -> 20 inner steps per outer step), (b) SPGD (one step per batch of 50), (c) random +-eps
signs, all at eps 10/255, step eps/10, 3 epochs of the same batches (SGA's CPU-sized configuration)?
SGA with momentum 0.9 (the released code's option) is reported for information.

Goal: mean held-out fooling rate SGA >= SPGD > random over the seeds; exit 1 otherwise.

Run: ``OMP_NUM_THREADS=1 python bench/uap.py`` (about 1-2 min per seed on a quiet 2-core machine).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _env import environment
from _seeded import run_seeds

from faceops.ood.shifts import sample_faces
from faceops.robust import (
    OutputClassifier,
    UAPConfig,
    fooling_rate,
    predict_labels,
    random_sign_perturbation,
    train_uap,
)
from faceops.robust.surrogate import LOGITS, train_classifier

RESULTS = Path(__file__).resolve().parent / "results" / "uap.json"
CFG = UAPConfig(eps=10 / 255, step_decay=0.1, batch_size=50, minibatch_size=5, inner_iters=2, epochs=3)
METHODS = ("sga", "spgd", "random", "sga_momentum")


def run_seed(seed: int, steps: int) -> dict:
    """Fooling rates of the four perturbations against one trained classifier."""
    start = time.perf_counter()
    pool = sample_faces(10, 100, seed=seed, size=32)
    train, held = pool.photo < 50, pool.photo >= 50
    model = train_classifier(pool.images[train], pool.identity[train], steps=steps, seed=seed)
    classifier = OutputClassifier(model, LOGITS)
    to_tensor = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    attack, test = to_tensor(pool.images[train]), to_tensor(pool.images[held])
    accuracy = float((predict_labels(classifier, test) == torch.from_numpy(pool.identity[held])).float().mean())
    clean = predict_labels(classifier, test)
    deltas = {"random": random_sign_perturbation((3, 32, 32), CFG.eps, seed=seed)}
    for name, method, cfg in (
        ("sga", "sga", CFG),
        ("spgd", "spgd", CFG),
        ("sga_momentum", "sga", replace(CFG, momentum=0.9)),
    ):
        deltas[name] = train_uap(classifier, attack, cfg, method=method, seed=seed)
    rates = {name: fooling_rate(classifier, test, delta, clean=clean) for name, delta in deltas.items()}
    return {
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "held_out_accuracy": accuracy,
        "fooling_rate": rates,
        "linf": {name: float(delta.abs().max()) for name, delta in deltas.items()},
    }


def main() -> int:
    args, runs = run_seeds(
        __doc__.split("\n")[0],
        run_seed,
        lambda run: (
            f"held-out accuracy "
            f"{run['held_out_accuracy']:.3f}, " + ", ".join(f"{m} {run['fooling_rate'][m]:.3f}" for m in METHODS)
        ),
    )
    stats = {m: (float(np.mean([r["fooling_rate"][m] for r in runs])), float(np.std([r["fooling_rate"][m] for r in runs])))
             for m in METHODS}  # fmt: skip
    print(
        f"\nheld-out fooling rate, eps {CFG.eps * 255:.0f}/255, {CFG.epochs} epochs, mean +- std over {len(runs)} seeds"
    )
    print(f"{'method':<14}{'fooling rate':>20}")
    for m in METHODS:
        print(f"{m:<14}{stats[m][0]:>12.3f} +- {stats[m][1]:.3f}")
    ok = stats["sga"][0] >= stats["spgd"][0] > stats["random"][0]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "question": "held-out fooling rate of SGA vs SPGD vs random sign noise at equal budget and iterations",
        "config": {k: getattr(CFG, k) for k in ("eps", "step_decay", "batch_size", "minibatch_size", "inner_iters",
                                                "epochs", "beta")},
        "seeds": args.seeds, "steps": args.steps, "runs": runs, "mean_std": stats,
        "goal": "mean fooling rate SGA >= SPGD > random", "goal_met": ok,
        "env": environment("torch", "numpy", torch_threads=args.threads),
    }, indent=2) + "\n")  # fmt: skip
    print(
        f"\nSUMMARY uap: held-out fooling rate SGA {stats['sga'][0]:.3f} vs SPGD {stats['spgd'][0]:.3f} vs random {stats['random'][0]:.3f} "
        f"(goal SGA >= SPGD > random: {'met' if ok else 'NOT met'})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
