"""Shared set-up for the tests that run the real pipeline in a temporary git + DVC workspace.

One place says how the demo's params shrink to a test-sized run (40 tiny faces, a few training
steps, one keypoint epoch, a 3-neighbour clustering graph), so every such test exercises the same
stages with the same sizes.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = {"identities": 10, "images_per_identity": 4, "min_side": 160, "max_side": 200}
FIT = {"steps": 3, "warmup_steps": 1, "batch_size": 8, "checkpoint_every": 2, "shuffle_buffer": 16}


def tiny_params(**overrides: dict[str, Any]) -> dict[str, Any]:
    """The repository's params.yaml shrunk to test size; ``overrides`` update whole sections."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sample"].update(TINY)
    params["align"]["workers"] = 1
    params["shard"]["maxcount"] = 8
    params["report"]["faces_per_split"] = 8
    params["pretrain"].update(FIT)
    params["train"].update(FIT)
    params["adapt"].update({**FIT, "batch_size": 4, "target_batch": 4, "rounds": 1})  # the tiny g0 has 4 faces
    params["evaluate"].update({"n_pairs": 40, "folds": 4})
    params["keypoints"].update({"epochs": 1, "max_unlabeled": 8, "batch_size": 8})
    params["embed"]["batch_size"] = 16
    params["cluster"].update({"k1": 3, "k2": 2, "u": 2, "epochs": 1})
    params["structure_sample"].update({"images": 24, "image_size": 32})  # 16 train, 7 test scenes
    params["structure_shard"].update({"image_size": 32, "maxcount": 8})
    params["structure_train"].update({"steps": 3, "warmup_steps": 1, "batch_size": 4, "max_corners": 12,
                                      "checkpoint_every": 2, "shuffle_buffer": 8})
    params["structure_evaluate"].update({"max_corners": 12, "plot_images": 4})
    params["sr"].update({"steps": 2, "batch_size": 2, "patch": 8, "grid_images": 2, "eval_batch_size": 8})
    params["evaluate"]["lowres"] = {**params["evaluate"].get("lowres", {}), "resolutions": [14, 112]}
    params["robustness"].update({"epochs": 1, "max_images": 12})
    for section, values in overrides.items():
        params[section] = {**params.get(section, {}), **values}
    return params


def copy_project(root: Path, params: dict[str, Any], drop_stages: Sequence[str] = ()) -> None:
    """dvc.yaml, stages/, src/, the given params and (empty) verification and imported-weights folders into ``root``.

    ``drop_stages``: dvc.yaml stages (with nothing downstream of them) a test has no use for, left out of its
    workspace's dvc.yaml so its pipeline runs skip their fixed cost.
    """
    shutil.copy(REPO / ".dvcignore", root / ".dvcignore")
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    unknown = set(drop_stages) - set(spec["stages"])
    assert not unknown, f"no such dvc.yaml stages: {sorted(unknown)}"
    spec["stages"] = {name: stage for name, stage in spec["stages"].items() if name not in drop_stages}
    text = yaml.safe_dump(spec, sort_keys=False) if drop_stages else (REPO / "dvc.yaml").read_text()
    (root / "dvc.yaml").write_text(text)
    for folder in ("stages", "src"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "data" / "verification").mkdir(parents=True)
    (root / "data" / "verification" / "README.md").write_text("verification sets\n")
    (root / "models" / "imported").mkdir(parents=True)
    (root / "models" / "imported" / "README.md").write_text("imported weights\n")
