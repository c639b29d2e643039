"""What bench/adapt.py and bench/fairness.py share: the sample faces with their skin-tone groups, a training job,
per-group verification (the RFW protocol of ``faceops.eval.groups``) and the seed statistics.

The data is the ``sample`` stage's synthetic faces (``faceops.sample``: four skin-tone groups g0 (lightest) ..
g3 (darkest), drawn per identity), aligned with their exact landmarks and sharded train/val/test by identity
(``bench/multitask.py``'s ``build_shards``), so every number comes from the project's own data path.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from faceops.config.train import TrainParams
from faceops.eval.model import evaluate_model
from faceops.io.checkpoint import save_checkpoint
from faceops.io.shards import split_urls
from faceops.train import DistInfo, load_trained_model
from faceops.train.job import run_training
from multitask import build_shards

__all__ = ["CPU", "GROUPS", "fmt", "group_accuracy", "mean_spread", "sample_shards", "train_model"]

GROUPS = ("g0", "g1", "g2", "g3")
CPU = DistInfo(0, 1, 0, torch.device("cpu"))


def sample_shards(root: Path, identities: int, per_identity: int, seed: int) -> dict[str, list[Path]]:
    """The sample's ``train`` and ``test`` shard files (seeded faces, split by identity)."""
    folder = build_shards(root, identities, per_identity, seed) / "sample"
    return {split: split_urls(folder, split) for split in ("train", "test")}


def train_model(cfg: TrainParams, urls: Sequence[Path], *, seed: int, out: Path, init: Path | None = None) -> Path:
    """Train ``cfg`` on ``urls`` (the ``train`` stage's job, one CPU process); the exported model's path."""
    trained = run_training(cfg, seed=seed, shard_urls={cfg.sources[0].name: list(urls)}, dist=CPU,
                           resume_file=out.parent / f"{out.stem}-last.pt", init_file=init)  # fmt: skip
    save_checkpoint(out, trained.record, kind="model")
    return out


def group_accuracy(model_file: Path, test_urls: Sequence[Path], *, seed: int) -> dict[str, Any]:
    """Per-group 10-fold verification accuracy (pairs within each group), mean, std and SER of ``model_file``."""
    torch.manual_seed(seed)
    model, _ = load_trained_model(model_file)
    metrics, _ = evaluate_model(model, {"sample": test_urls}, bins={}, image_size=112, n_pairs=4000, folds=10,
                                seed=seed, batch_size=64)  # fmt: skip
    prefix = "sample/group/"
    return {key.removeprefix(prefix): value for key, value in metrics.items() if key.startswith(prefix)}


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) over seeds."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(values: Mapping[str, Sequence[float]], key: str, scale: float = 100.0) -> str:
    """``mean ± std`` of ``values[key]`` over seeds, scaled (accuracies in points)."""
    mean, spread = mean_spread([v * scale for v in values[key]])
    return f"{mean:6.2f} ± {spread:4.2f}"
