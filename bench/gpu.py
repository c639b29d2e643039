"""Benchmark: the CUDA paths (bf16 training of full-size SwinFace, bf16 embeddings) on a lent GPU.

Questions:
1. Full-size ``swinface_swin_t`` (67.4 M parameters, 42 heads + CosFace over ``--classes`` identities):
   training step throughput and peak memory at batch ``--batch`` with bf16 autocast vs fp32 (the
   baseline, same run, same data). Goal: bf16 trains (finite, falling loss on a fixed batch) and is
   faster than fp32.
2. Embeddings: the same random-init model embeds the same faces on CPU in fp32 and on CUDA in bf16
   (the ``embed``/``evaluate`` stage settings). Goal: mean cosine between the two >= 0.99, so GPU
   and CPU runs give interchangeable embeddings up to bf16 rounding.

Synthetic uint8 faces and labels (seeded); nothing is downloaded. Exits 1 when a goal is missed or
no CUDA device is present. Usage: ``python bench/gpu.py`` (on a GPU machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import NOT_RUN, environment  # noqa: E402

from faceops.eval.evaluate import predict  # noqa: E402
from faceops.labels import CELEBA_ATTRIBUTES  # noqa: E402
from faceops.losses import MarginSoftmax, SwinFaceLoss  # noqa: E402
from faceops.models import create_model, param_groups  # noqa: E402
from faceops.train.batch import normalize_images, to_targets  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "gpu.json"


def _metas(n: int, classes: int, rng: np.random.Generator) -> list[dict]:
    """Every label SwinFace supervises, drawn at random."""
    return [
        {"id": f"s{i}", "source": "syn", "identity": f"p{rng.integers(classes)}", "age": float(rng.uniform(10, 80)),
         "expression": int(rng.integers(7)), **{a: int(rng.integers(2)) for a in CELEBA_ATTRIBUTES}}
        for i in range(n)
    ]  # fmt: skip


def train_steps(model_name: str, *, batch: int, classes: int, steps: int, precision: str, seed: int) -> dict:
    """Time ``steps`` optimizer steps on one fixed batch after 3 warm-up steps; loss must fall."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    device = torch.device("cuda")
    model = create_model(model_name).to(device)
    margin = MarginSoftmax(classes, model.num_features, s=64.0, m_cos=0.4, seed=seed)
    loss_fn = SwinFaceLoss(margin, model.head_specs).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, 1e-4, backbone_lr_scale=1.0, weight_decay=0.05,
                                               extra_head_modules=[loss_fn]))  # fmt: skip
    images = torch.from_numpy(rng.integers(0, 256, (batch, 3, 112, 112), dtype=np.uint8)).to(device)
    metas = _metas(batch, classes, rng)
    targets, masks = to_targets(metas, model.head_specs, {f"syn/p{i}": i for i in range(classes)})
    targets = {k: v.to(device) for k, v in targets.items()}
    masks = {k: v.to(device) for k, v in masks.items()}
    dtype = torch.bfloat16 if precision == "bf16" else None
    losses: list[float] = []

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            total, _ = loss_fn(model(normalize_images(images)), targets, masks, progress=0.5)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        losses.append(float(total.detach()))

    model.train()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    return {
        "model": model_name, "precision": precision, "batch": batch, "steps": steps,
        "images_per_s": round(batch * steps / seconds, 1), "ms_per_step": round(1000 * seconds / steps, 2),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
        "finite": bool(np.isfinite(losses).all()),
    }  # fmt: skip


def embedding_agreement(model_name: str, n: int, seed: int) -> dict:
    """Mean/min cosine between CPU fp32 and CUDA bf16 embeddings of the same faces."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = create_model(model_name)
    images = torch.from_numpy(rng.integers(0, 256, (n, 3, 112, 112), dtype=np.uint8))
    batches = [{"image": images[i : i + 64], "key": [str(k) for k in range(i, min(i + 64, n))],
                "meta": [{}] * len(images[i : i + 64])} for i in range(0, n, 64)]  # fmt: skip
    cpu = predict(model, batches, normalize=normalize_images).embeddings
    gpu = predict(model.to("cuda"), batches, normalize=normalize_images, device="cuda",
                  autocast_dtype=torch.bfloat16).embeddings  # fmt: skip
    cos = (cpu * gpu).sum(axis=1)
    return {"model": model_name, "n": n, "mean_cos": round(float(cos.mean()), 5), "min_cos": round(float(cos.min()), 5)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("SUMMARY gpu: not run: no CUDA device here; run it on a GPU machine")
        return NOT_RUN
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 baseline means real fp32
    rows = [train_steps(m, batch=args.batch, classes=args.classes, steps=args.steps, precision=p, seed=args.seed)
            for m in ("swinface_swin_t", "swinface_cpu") for p in ("fp32", "bf16")]  # fmt: skip
    print(f"{'model':<14} {'prec':<5} {'img/s':>8} {'ms/step':>8} {'peak GiB':>9} {'loss first->last':>18}")
    for r in rows:
        print(f"{r['model']:<14} {r['precision']:<5} {r['images_per_s']:>8} {r['ms_per_step']:>8} "
              f"{r['peak_mem_gib']:>9} {r['loss_first']:>8} -> {r['loss_last']:<8}")  # fmt: skip
    agree = [embedding_agreement(m, 512, args.seed) for m in ("swinface_swin_t", "swinface_cpu")]
    for a in agree:
        print(f"embeddings {a['model']}: CPU fp32 vs CUDA bf16 cosine mean {a['mean_cos']}, min {a['min_cos']}")
    full = {r["precision"]: r for r in rows if r["model"] == "swinface_swin_t"}
    speedup = full["bf16"]["images_per_s"] / full["fp32"]["images_per_s"]
    trains = all(r["finite"] and r["loss_last"] < r["loss_first"] for r in rows)
    agrees = all(a["mean_cos"] >= 0.99 for a in agree)
    ok = trains and agrees and speedup > 1.0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    env = environment("torch", "timm", device=torch.cuda.get_device_name(0))
    RESULTS.write_text(json.dumps({"environment": env, "args": vars(args), "train": rows, "embeddings": agree,
                                   "bf16_speedup": round(speedup, 2), "ok": ok}, indent=2) + "\n")  # fmt: skip
    print(f"SUMMARY gpu: swinface_swin_t bf16 {full['bf16']['images_per_s']} img/s = {speedup:.2f}x fp32, "
          f"peak {full['bf16']['peak_mem_gib']} GiB at batch {args.batch}; loss falls: {trains}; "
          f"embedding cosine >= 0.99: {agrees} -> {'MET' if ok else 'NOT MET'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
