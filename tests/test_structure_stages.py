"""The structure stages on a tiny generated set (sample -> shard -> train -> evaluate), and the training job's resume.

Sizes: 24 scenes of 32 px, 3 training steps of 4 images with ``cornerformer_tiny``: this checks that the stages
connect, write what dvc.yaml says, reproduce their bytes and restore finished runs, not how well the model learns
(bench/structure.py measures that).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import yaml

from faceops.config.structure_train import StructureTrainParams
from faceops.io.checkpoint import load_checkpoint
from faceops.io.shards import split_urls
from faceops.structure.evaluation import load_structure_model
from faceops.structure.training import train_structure
from stages import structure_evaluate, structure_sample, structure_shard, structure_train

TRAIN = {"model": "cornerformer_tiny", "steps": 3, "warmup_steps": 1, "batch_size": 4, "max_corners": 12,
         "shuffle_buffer": 8, "checkpoint_every": 2, "log_every": 1, "precision": "fp32"}  # fmt: skip


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _params(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({
        "base": {"seed": 0},
        "structure_sample": {"images": 24, "image_size": 32, "buildings": [1, 2]},
        "structure_shard": {"image_size": 32, "maxcount": 8, "split": {"train": 0.6, "val": 0.0, "test": 0.4}},
        "structure_train": TRAIN,
        "structure_evaluate": {"max_corners": 12, "plot_images": 4, "batch_size": 8},
    }))  # fmt: skip
    return path


def _run_all(tmp_path: Path, params: Path, out: str) -> Path:
    root = tmp_path / out
    common = ["--params", str(params)]
    structure_sample.main([*common, "--out", str(root / "raw" / "synthetic"), "--metrics", str(root / "m" / "s.json")])
    structure_shard.main([*common, "--raw", str(root / "raw"), "--out", str(root / "shards"),
                          "--metrics", str(root / "m" / "sh.json")])  # fmt: skip
    structure_train.main([*common, "--shards", str(root / "shards"), "--out", str(root / "model"), "--ckpt",
                          str(root / "ckpt"), "--cache", str(tmp_path / "cache" / "train"), "--metrics",
                          str(root / "m" / "t.json"), "--live", str(root / "live")])  # fmt: skip
    structure_evaluate.main([*common, "--model", str(root / "model"), "--shards", str(root / "shards"),
                             "--metrics", str(root / "m" / "e.json"), "--plots", str(root / "plots")])  # fmt: skip
    return root


@pytest.mark.slow
def test_stages_connect_reproduce_and_restore(tmp_path):
    params = _params(tmp_path)
    first = _run_all(tmp_path, params, "first")
    metrics = yaml.safe_load((first / "m" / "e.json").read_text())
    assert metrics["step"] == 3 and metrics["synthetic/images"] > 0
    assert {f"synthetic/{k}/f1" for k in ("corner", "edge", "region")} <= set(metrics)
    assert (first / "plots" / "synthetic_graphs.png").stat().st_size > 0
    assert (first / "live" / "plots" / "metrics").is_dir() and not any((first / "ckpt").iterdir())
    model, record = load_structure_model(first / "model" / "model.pt")
    assert record["model_args"] == {"corner_channels": 4, "feature_sharing": "multiscale"} and not model.training
    # same params -> byte-identical data and model; the second training is restored from the run cache
    second = _run_all(tmp_path, params, "second")
    for folder in ("raw", "shards", "model", "plots"):
        assert _digests(first / folder) == _digests(second / folder), folder
    assert len(list((tmp_path / "cache" / "train").iterdir())) == 1


def test_a_killed_training_resumes_to_the_same_weights(tmp_path):
    params = _params(tmp_path)
    root = tmp_path / "data"
    structure_sample.main(["--params", str(params), "--out", str(root / "raw" / "synthetic"), "--metrics",
                           str(root / "s.json")])  # fmt: skip
    structure_shard.main(["--params", str(params), "--raw", str(root / "raw"), "--out", str(root / "shards"),
                          "--metrics", str(root / "sh.json")])  # fmt: skip
    cfg = StructureTrainParams(**{**TRAIN, "steps": 4})
    urls = {"synthetic": split_urls(root / "shards" / "synthetic", "train")}
    whole = train_structure(cfg, seed=3, shard_urls=urls)

    def kill_after_step_3(done: int) -> None:
        kill_after_step_3.steps += done
        if kill_after_step_3.steps == 3:
            raise KeyboardInterrupt

    kill_after_step_3.steps = 0
    resume = tmp_path / "ckpt" / "last.pt"
    with pytest.raises(KeyboardInterrupt):
        train_structure(cfg, seed=3, shard_urls=urls, resume_file=resume, progress=kill_after_step_3)
    assert load_checkpoint(resume, kind="resume")["step"] == 2
    resumed = train_structure(cfg, seed=3, shard_urls=urls, resume_file=resume)
    assert resumed.resumed_from == 2 and resumed.metrics["steps"] == 4
    for name, tensor in whole.record["state_dict"].items():
        torch.testing.assert_close(resumed.record["state_dict"][name], tensor, rtol=0, atol=0, msg=name)


def test_a_listed_source_that_is_missing_stops_the_shard_stage_naming_it(tmp_path):
    params = _params(tmp_path)
    with pytest.raises(SystemExit, match="lists 'synthetic' but .* does not exist"):
        structure_shard.main(["--params", str(params), "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out"),
                              "--metrics", str(tmp_path / "m.json")])  # fmt: skip
    assert not (tmp_path / "out").exists()
