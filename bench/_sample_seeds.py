"""What bench/lowres.py and bench/sr.py share: the options, the seed loop over fresh sample data, mean ± std.

Every seed builds its own sample data set in a temporary folder (bench/multitask.py's ``build_shards``: the
``sample`` stage's faces aligned with their exact landmarks) and trains everything it compares, so one lucky
draw cannot carry a result; figures are reported as mean ± sample standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch


def sample_parser(description: str, *, steps: int) -> argparse.ArgumentParser:
    """``--identities --images`` (the sample's size), ``--seeds``, ``--steps`` (default ``steps``), ``--threads``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--identities", type=int, default=60)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser


def seeded_runs(args: argparse.Namespace, run_seed: Callable[[argparse.Namespace, int, Path], dict],
                describe: Callable[[dict], str]) -> list[dict]:  # fmt: skip
    """``run_seed(args, seed, folder)`` for every seed in a fresh temporary folder, printing ``describe(run)``."""
    torch.set_num_threads(args.threads)
    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(run_seed(args, seed, Path(tmp)))
        print(f"seed {seed}: {describe(runs[-1])}", flush=True)
    return runs


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
