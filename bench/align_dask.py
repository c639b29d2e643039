"""Benchmark: what does align's Dask runner cost on one machine, next to the process pool?

Question: ``align_many(..., runner="dask")`` exists so that several machines can share one align run.
On a single machine, with a cold cache, how much slower is a temporary local Dask cluster of 2
workers than the default pool of 2 worker processes, and how much of that is fixed start-up?

Data: the seeded synthetic photos of bench/align.py (given landmarks, longer side ``--min-side``..
``--max-side`` px), so the per-image work is align's real work (read, warp, JPEG encode, cache write).

Timing: each variant is one ``align_many`` call in a fresh Python process on an empty cache, as a
stage run pays it (imports are not timed; pool or cluster start-up and shut-down are). Variants run
interleaved, best of ``--repeats``.
* processes: ``runner="processes"``, 2 workers (the default runner).
* dask: ``runner="dask"``, a temporary local cluster of 2 workers (plain dask.distributed).
The fixed cost is estimated from a run of 8 photos per variant (start-up and shut-down, ~no work).

Goal: dask at most 1.5x the wall time of processes. Exit 1 otherwise, or if any
variant's results differ (JPEG bytes, landmarks, reasons, order).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _env import environment
from align import load_jobs, make_photos, save_jobs, timed

from faceops.align import align_many

RESULTS = Path(__file__).resolve().parent / "results" / "align_dask.json"
SLOWDOWN_GOAL = 1.5
WORKERS = 2
VARIANTS = {"processes": "processes, 2 workers", "dask": "dask, local cluster of 2 workers"}


def time_once(jobs_file: Path, cache: Path, runner: str) -> int:
    """Child side: align the jobs on ``cache``; print seconds, a digest of every result, how many are ok."""
    jobs = load_jobs(jobs_file)
    seconds, results = timed(lambda: align_many(jobs, cache_dir=cache, workers=WORKERS, runner=runner))
    digest = hashlib.sha256()
    for r in results:
        digest.update(json.dumps([r.id, r.ok, r.reason, r.detail, r.score, r.landmark_source]).encode())
        digest.update(r.landmarks.tobytes() if r.landmarks is not None else b"-")
        digest.update(r.jpeg or b"-")
    print(json.dumps({"seconds": seconds, "digest": digest.hexdigest(), "ok": sum(r.ok for r in results)}))
    return 0


def run_variant(variant: str, jobs_file: Path, cache: Path, env: dict[str, str]) -> dict:
    runner = "processes" if variant == "processes" else "dask"
    command = [sys.executable, __file__, "--time-once", str(jobs_file), "--cache", str(cache), "--runner", runner]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--min-side", type=int, default=300)
    parser.add_argument("--max-side", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-once", type=Path, help=argparse.SUPPRESS)  # child mode: a jobs file
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--runner", default="processes", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.time_once is not None:
        return time_once(args.time_once, args.cache, args.runner)

    n = args.images
    with tempfile.TemporaryDirectory(prefix="faceops-bench-align-dask-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "photos").mkdir()
        jobs = make_photos(tmp / "photos", n, args.seed, args.min_side, args.max_side)
        save_jobs(jobs, tmp / "jobs.json")
        save_jobs(jobs[:8], tmp / "few.json")
        env = dict(os.environ)
        load_start = os.getloadavg()
        runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        fixed: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for rep in range(args.repeats):
            os.sync()  # flush the photos and earlier caches, as bench/align.py does
            for variant in VARIANTS:
                runs[variant].append(run_variant(variant, tmp / "jobs.json", tmp / f"all_{variant}_{rep}", env))
                few = run_variant(variant, tmp / "few.json", tmp / f"few_{variant}_{rep}", env)
                fixed[variant].append(few["seconds"])
        load_end = os.getloadavg()

    best = {v: min(r["seconds"] for r in rs) for v, rs in runs.items()}
    best_fixed = {v: min(values) for v, values in fixed.items()}
    digests = {r["digest"] for rs in runs.values() for r in rs}
    all_ok = all(r["ok"] == n for rs in runs.values() for r in rs)
    slowdown = best["dask"] / best["processes"]
    met = slowdown <= SLOWDOWN_GOAL and len(digests) == 1 and all_ok

    print(f"{n} photos ({args.min_side}-{args.max_side} px), cold cache, best of {args.repeats}, "
          f"{os.cpu_count()} CPU cores, load average {load_start[0]:.2f} -> {load_end[0]:.2f}")  # fmt: skip
    print(f"{'variant':<45}{'seconds':>9}{'images/s':>10}{'x processes':>13}{'8 photos, s':>13}")
    for variant, label in VARIANTS.items():
        print(f"{label:<45}{best[variant]:>9.2f}{n / best[variant]:>10.1f}{best[variant] / best['processes']:>13.2f}"
              f"{best_fixed[variant]:>13.2f}")  # fmt: skip
    print(f"identical results across variants and repeats: {len(digests) == 1}; aligned {n}/{n}: {all_ok}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {"images": n, "sides": [args.min_side, args.max_side], "repeats": args.repeats, "seed": args.seed,
              "workers": WORKERS, "seconds_best": best, "seconds_8_photos_best": best_fixed,
              "runs": runs, "seconds_8_photos_all": fixed, "dask_over_processes": slowdown,
              "goal": f"dask/processes <= {SLOWDOWN_GOAL}", "met": met, "identical_results": len(digests) == 1,
              "load_average_start_end": [load_start[0], load_end[0]],
              "environment": environment("cv2", "numpy", "distributed")}  # fmt: skip
    RESULTS.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    verdict = "goal met" if met else f"NOT MET (goal dask/processes <= {SLOWDOWN_GOAL})"
    print(f"SUMMARY align_dask: processes {n / best['processes']:.0f} images/s, dask {n / best['dask']:.0f} "
          f"images/s ({slowdown:.2f}x the time; fixed cost ~{best_fixed['dask']:.1f} s vs "
          f"{best_fixed['processes']:.1f} s) -> {verdict}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
