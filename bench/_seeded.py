"""What the benches around a small trained classifier share: ``--seeds/--steps/--threads`` and the seed loop.

An effect is reported over several seeds (mean and spread); each seed trains its own classifier on its own
generated faces, so one lucky draw cannot carry a result.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch


def run_seeds(
    description: str, run_seed: Callable[[int, int], dict], describe: Callable[[dict], str]
) -> tuple[argparse.Namespace, list[dict]]:
    """Parse the shared options, then ``run_seed(seed, steps)`` for seeds 0..N-1, printing ``describe(run)``.

    Returns:
        ``(args, runs)``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, default=3, help="seeds (each trains its own classifier)")
    parser.add_argument("--steps", type=int, default=300, help="classifier training steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    for seed in range(args.seeds):
        runs.append(run_seed(seed, args.steps))
        print(f"seed {seed}: {runs[-1]['seconds']:.0f} s, {describe(runs[-1])}", flush=True)
    return args, runs
