"""Finished-run cache of the training stages: same inputs reuse the exported run, any real change retrains."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceops import runcache
from faceops.io.shards import ShardSample, write_index, write_shards
from faceops.labels import sample_id
from faceops.runtime import torch_version
from stages import _training, pretrain, train

REPO = Path(__file__).resolve().parents[1]
N_IDS, PER_ID = 3, 4
SECTION = {"sources": [{"name": "faces", "share": 1.0}], "steps": 2, "warmup_steps": 1, "batch_size": 4,
           "checkpoint_every": 1, "shuffle_buffer": 4}  # fmt: skip


def _jpeg(rng: np.random.Generator, level: int) -> bytes:
    image = np.clip(rng.normal(60 * level, 20, (112, 112, 3)), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def write_source(root: Path, source: str, *, age: float = 30.0, test_split: bool = False) -> None:
    """One source of noise faces (identity = brightness); ``age`` labels the first sample only."""
    rng = np.random.default_rng(0)
    folder = root / source
    if folder.exists():
        for path in folder.iterdir():
            path.unlink()
    splits = {}
    for split, ids in (("train", range(N_IDS)), ("test", range(N_IDS, N_IDS + 1) if test_split else ())):
        samples = [ShardSample(key, _jpeg(rng, i), {"id": key, "source": source, "identity": f"p{i}",
                                                    "age": age if (i, j) == (0, 0) else None})
                   for i in ids for j in range(PER_ID) for key in [sample_id(source, f"{i}/{j}.jpg")]]  # fmt: skip
        if samples:
            infos = write_shards(samples, folder, split=split, maxcount=8)
            splits[split] = {"shards": [i.name for i in infos], "samples": len(samples), "identities": len(ids)}
    write_index(folder, {"format": 1, "source": source, "samples": sum(s["samples"] for s in splits.values()),
                         "splits": splits})  # fmt: skip


def _digests(*paths: Path) -> dict[str, str]:
    files = [p for path in paths for p in ([path] if path.is_file() else sorted(path.rglob("*"))) if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """Shards of one source, a params file, and a counter of real training runs."""
    enabled = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    write_source(tmp_path / "shards", "faces")
    (tmp_path / "params.yaml").write_text(json.dumps({"pretrain": SECTION, "train": SECTION}))
    trained: list[str] = []
    real = _training._train
    monkeypatch.setattr(_training, "_train", lambda stage, *a, **k: (trained.append(stage), real(stage, *a, **k)))
    yield tmp_path, trained
    torch.use_deterministic_algorithms(enabled[0], warn_only=enabled[1])


def run_pretrain(root: Path) -> Path:
    pretrain.main(["--params", str(root / "params.yaml"), "--shards", str(root / "shards"), "--out",
                   str(root / "pre"), "--ckpt", str(root / "ckpt/pre"), "--metrics", str(root / "pre.json"),
                   "--live", str(root / "pre_live"), "--cache", str(root / "cache/pre")])  # fmt: skip
    return root / "pre" / "model.pt"


def run_train(root: Path) -> Path:
    train.main(["--params", str(root / "params.yaml"), "--shards", str(root / "shards"), "--pretrained",
                str(root / "pre"), "--imported", str(root / "imported"), "--out", str(root / "sf"), "--ckpt",
                str(root / "ckpt/train"), "--metrics", str(root / "train.json"), "--live", str(root / "sf_live"),
                "--cache", str(root / "cache/train")])  # fmt: skip
    return root / "sf" / "model.pt"


def test_same_inputs_reexport_the_finished_runs_byte_for_byte(workspace):
    root, trained = workspace
    run_pretrain(root), run_train(root)
    outputs = [root / name for name in ("pre", "pre.json", "pre_live", "sf", "train.json", "sf_live")]
    before = _digests(*outputs)
    # Another source's shards and a test split of this one change data/shards but not what training reads.
    write_source(root / "shards", "faces", test_split=True)
    write_source(root / "shards", "other")
    for path in outputs:  # as DVC does before it runs a stage
        if path.is_dir():
            for file in sorted(path.rglob("*"), reverse=True):
                file.unlink() if file.is_file() else file.rmdir()
            path.rmdir()
        else:
            path.unlink()
    run_pretrain(root), run_train(root)
    assert trained == ["pretrain", "train"]
    assert _digests(*outputs) == before
    assert not list((root / "ckpt").rglob("*.pt"))  # resume folders are still removed after export


def test_changed_params_or_train_shard_content_retrain(workspace):
    root, trained = workspace
    model = run_pretrain(root)
    first = model.read_bytes()
    params = json.loads((root / "params.yaml").read_text())
    params["pretrain"]["steps"] = 3
    (root / "params.yaml").write_text(json.dumps(params))
    run_pretrain(root)
    assert trained == ["pretrain", "pretrain"]
    assert torch.load(model, weights_only=True)["step"] == 3
    # One label changed: same shard names and counts, so index.json keeps its bytes; the content does not.
    index = (root / "shards/faces/index.json").read_bytes()
    write_source(root / "shards", "faces", age=31.0)
    assert (root / "shards/faces/index.json").read_bytes() == index
    run_pretrain(root)
    assert trained == ["pretrain"] * 3
    params["pretrain"]["steps"] = 2  # back to the first run's inputs: reused, not retrained
    (root / "params.yaml").write_text(json.dumps(params))
    write_source(root / "shards", "faces")
    assert run_pretrain(root).read_bytes() == first
    assert trained == ["pretrain"] * 3
    assert len(list((root / "cache/pre").iterdir())) == 3


def test_a_changed_pretrained_model_retrains_train(workspace):
    root, trained = workspace
    run_pretrain(root), run_train(root)
    params = json.loads((root / "params.yaml").read_text())
    params["pretrain"]["lr"] = 5e-4
    (root / "params.yaml").write_text(json.dumps(params))
    run_pretrain(root), run_train(root)
    assert trained == ["pretrain", "train"] * 2


_RESTORE_WITHOUT_TORCH = """
import runpy, sys
sys.argv = ["stages.pretrain", *sys.argv[1:]]
runpy.run_module("stages.pretrain", run_name="__main__")
assert "torch" not in sys.modules, "restoring a finished run imported torch"
"""


def test_a_restore_never_imports_torch_and_gives_the_same_bytes(workspace):
    """The cheap path the incremental pipeline relies on: a stage process that only restores."""
    root, trained = workspace
    run_pretrain(root)
    before = _digests(root / "pre", root / "pre.json")
    (root / "pre" / "model.pt").unlink()
    args = ["--params", str(root / "params.yaml"), "--shards", str(root / "shards"), "--out", str(root / "pre"),
            "--ckpt", str(root / "ckpt/pre"), "--metrics", str(root / "pre.json"), "--live", str(root / "pre_live"),
            "--cache", str(root / "cache/pre")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "WORLD_SIZE"}
    done = subprocess.run([sys.executable, "-c", _RESTORE_WITHOUT_TORCH, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "restored its outputs" in done.stdout + done.stderr
    assert _digests(root / "pre", root / "pre.json") == before
    assert trained == ["pretrain"]


def test_stage_modules_and_fingerprint_inputs_do_not_import_torch():
    stages = ["sample", "ingest", "keypoints", "align", "shard", "pretrain", "train", "adapt", "evaluate", "embed",
              "cluster", "report"]  # fmt: skip
    probe = ("import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
             "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, *[f"stages.{s}" for s in stages]], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_torch_version_and_device_type_agree_with_torch():
    assert torch_version() == torch.__version__
    assert runcache.device_type() == ("cuda" if torch.cuda.is_available() else "cpu")
