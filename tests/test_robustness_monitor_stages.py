"""The `robustness` and `monitor` stages end to end on a tiny workspace: shards written here, a small SwinFace
record with random weights; what each writes, that the budget holds, and that a re-run gives the same bytes."""

from __future__ import annotations

import json

import cv2
import pytest
import torch
import yaml

from faceops.io.checkpoint import load_checkpoint, save_checkpoint
from faceops.io.shards import ShardSample, write_index, write_shards
from faceops.models import create_model
from faceops.ood.shifts import corrupt, sample_faces
from faceops.train.export import model_record

ROBUSTNESS = {"sources": ["sample"], "split": "test", "targets": ["Expression", "identity"], "max_images": 12,
              "batch_size": 4, "minibatch_size": 2, "inner_iters": 1, "epochs": 2}  # fmt: skip
MONITOR = {"model": "trained", "calibration_share": 0.4, "min_incoming": 4, "sheet_faces": 6, "k": 3}


def _shard_source(root, source, splits):
    index = {"format": 1, "source": source, "splits": {}, "samples": 0}
    for split, (faces, identities) in splits.items():
        samples = [ShardSample(f"{source}_{split}_{i:03d}", cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))[1]
                               .tobytes(), {"identity": ident, "expression": i % 7, "source": source})
                   for i, (face, ident) in enumerate(zip(faces, identities, strict=True))]  # fmt: skip
        infos = write_shards(samples, root / source, split=split, maxcount=8)
        index["splits"][split] = {"shards": [i.name for i in infos], "samples": len(samples),
                                  "identities": len({i for i in identities if i is not None})}  # fmt: skip
        index["samples"] += len(samples)
    write_index(root / source, index)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    pool = sample_faces(9, 4, seed=3, size=112)
    names = [f"id_{i}" for i in pool.identity]
    train, test = pool.identity < 6, pool.identity >= 6
    _shard_source(root / "shards", "sample", {"train": (pool.images[train], [n for n, t in zip(names, train) if t]),
                                              "test": (pool.images[test], [n for n, t in zip(names, test) if t])})  # fmt: skip
    cam = corrupt(pool.images[:10], "other_domain", 1.0, seed=0)
    _shard_source(root / "shards", "cam", {"unlabeled": (cam, [None] * 10)})
    torch.manual_seed(0)
    model = create_model("swinface_cpu")
    record = model_record(model, "swinface_cpu", {}, identities=sorted(set(names)), step=3,
                          params={"sources": [{"name": "sample", "share": 1.0}]}, init="scratch")  # fmt: skip
    save_checkpoint(root / "model" / "model.pt", record, kind="model")
    (root / "params.yaml").write_text(yaml.safe_dump({"robustness": ROBUSTNESS, "monitor": MONITOR}))
    return root


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _robustness(ws, run, cache=(), shards="shards"):
    from stages.robustness import main

    main(["--params", str(ws / "params.yaml"), "--model", str(ws / "model"), "--shards", str(ws / shards),
          "--out", str(ws / run / "out"), "--metrics", str(ws / run / "metrics.json"), "--plots", str(ws / run / "plots"),
          *[arg for folder in cache for arg in ("--cache", str(folder))]])  # fmt: skip
    return json.loads((ws / run / "metrics.json").read_text())


def _monitor(ws, run, cache=(), shards="shards"):
    from stages.monitor import main

    main(["--params", str(ws / "params.yaml"), "--model", str(ws / "model"), "--interim", str(ws / "interim"),
          "--shards", str(ws / shards), "--scratch", str(ws / "scratch"), "--out", str(ws / run / "out"),
          "--metrics", str(ws / run / "metrics.json"), "--plots", str(ws / run / "plots"),
          *[arg for folder in cache for arg in ("--cache", str(folder))]])  # fmt: skip
    return json.loads((ws / run / "metrics.json").read_text())


def test_robustness_stage_writes_rates_curves_and_perturbations(workspace):
    metrics = _robustness(workspace, "rob")
    for target in ("Expression", "identity"):
        assert metrics[f"sample/{target}/held_out_images"] == 6 and metrics[f"sample/{target}/attack_images"] == 6
        for method in ("sga", "spgd", "random"):
            assert 0.0 <= metrics[f"sample/{target}/{method}/fooling_rate"] <= 1.0
            assert metrics[f"sample/{target}/{method}/linf"] <= 10 / 255 + 1e-7
            assert (workspace / "rob" / "out" / f"sample_{target}_{method}.png").is_file()
        rows = json.loads((workspace / "rob" / "plots" / f"sample_{target}_fooling.json").read_text())
        assert [r["epoch"] for r in rows] == [1.0, 2.0] and set(rows[0]) == {"epoch", "sga", "spgd", "random"}


def test_robustness_restores_a_finished_run_when_only_other_sources_changed(workspace, monkeypatch, capsys):
    """New photos of a source the attack does not read (an inbox) leave its inputs as they were: the outputs of
    the finished run come back byte for byte without attacking again; a different model runs it again."""
    import shutil

    import stages.robustness as stage

    cache = workspace / "rob-cache"
    first = _robustness(workspace, "rob-first", cache=[cache])
    shutil.copytree(workspace / "shards", workspace / "shards-more")
    faces = sample_faces(2, 2, seed=9, size=112)
    _shard_source(workspace / "shards-more", "inbox01", {"unlabeled": (faces.images, [None] * len(faces.images))})
    monkeypatch.setattr(stage, "_run", lambda *a: pytest.fail("a restorable run attacked again"))
    capsys.readouterr()
    assert _robustness(workspace, "rob-again", cache=[cache], shards="shards-more") == first
    assert "same inputs as the finished run" in capsys.readouterr().err
    for folder in ("out", "plots"):
        assert _files(workspace / "rob-again" / folder) == _files(workspace / "rob-first" / folder)
    monkeypatch.undo()
    other = workspace / "model-other"
    record = load_checkpoint(workspace / "model" / "model.pt", kind="model")
    save_checkpoint(other / "model.pt", {**record, "step": record["step"] + 1}, kind="model")
    monkeypatch.setattr(stage, "_run", lambda *a: (_ for _ in ()).throw(LookupError("attacked again")))
    with pytest.raises(LookupError, match="attacked again"):
        stage.main(["--params", str(workspace / "params.yaml"), "--model", str(other), "--shards",
                    str(workspace / "shards"), "--out", str(workspace / "rob-other" / "out"), "--metrics",
                    str(workspace / "rob-other" / "m.json"), "--plots", str(workspace / "rob-other" / "plots"),
                    "--cache", str(cache)])  # fmt: skip


def test_monitor_stage_scores_every_new_photo_and_reruns_to_the_same_bytes(workspace):
    metrics = _monitor(workspace, "mon")
    summary = json.loads((workspace / "mon" / "out" / "summary.json").read_text())
    assert summary["reference_sources"] == ["sample"] and summary["recommendation"] in ("ok", "retrain")
    assert metrics["sample/incoming"] == 12 and metrics["cam/incoming"] == 10  # test split + the new source
    assert metrics["reference/fit"] + metrics["reference/calibration"] == 24  # the train split
    for source in ("sample", "cam"):
        entry = summary["sources"][source]
        assert len(entry["most_ood"]) == 6 and entry["recommendation"] in ("ok", "retrain") and entry["reason"]
        assert 0.0 <= metrics[f"{source}/ood_share"] <= 1.0 and f"{source}/gscore_mixture" in metrics
        assert (workspace / "mon" / "out" / entry["sheet"]).is_file()
        assert json.loads((workspace / "mon" / "plots" / f"{source}_scores.json").read_text())[0].keys() == {
            "score",
            "reference",
            "incoming",
        }
    _monitor(workspace, "again")
    assert _files(workspace / "mon") == _files(workspace / "again")


def test_monitor_with_kept_outputs_predicts_only_new_shards_and_writes_the_same_bytes(workspace, monkeypatch):
    """With --cache the model's outputs are kept per shard: after an inbox source arrives only its shard is
    predicted, and every output equals that of a run that predicted everything."""
    import shutil

    import faceops.ood.collect as collect

    cache, predicted = workspace / "mon-cache", []
    real = collect.predict

    def counted(model, batches, **kwargs):
        predicted.append(1)
        return real(model, batches, **kwargs)

    monkeypatch.setattr(collect, "predict", counted)
    first = _monitor(workspace, "mon-kept", cache=[cache])
    assert first == _monitor(workspace, "mon-plain")
    assert len(predicted) == 2 * len(list((workspace / "shards").rglob("*.tar")))  # every shard, by each run
    assert _files(workspace / "mon-kept") == _files(workspace / "mon-plain")
    shutil.copytree(workspace / "shards", workspace / "shards-inbox")
    _shard_source(workspace / "shards-inbox", "inbox01", {"unlabeled": (sample_faces(2, 2, seed=5, size=112).images,
                                                                        [None] * 4)})  # fmt: skip
    predicted.clear()
    kept = _monitor(workspace, "mon-inbox-kept", cache=[cache], shards="shards-inbox")
    assert len(predicted) == 1  # the inbox's one shard
    assert kept == _monitor(workspace, "mon-inbox-plain", shards="shards-inbox") and kept["inbox01/incoming"] == 4
    assert _files(workspace / "mon-inbox-kept") == _files(workspace / "mon-inbox-plain")


def test_monitor_against_a_promoted_version_scores_only_the_photos_added_since(workspace, monkeypatch, tmp_path):
    """``monitor.model: model@v1``: the model and the ingest manifest come from that version (stages._versions,
    tested against DVC in test_promotion); incoming = photos whose ids the version's manifest lacks."""
    import stages.monitor as stage
    from faceops.io.jsonl import write_jsonl

    old = [f"sample_{split}_{i:03d}" for split, n in (("train", 24), ("test", 12)) for i in range(n)]
    write_jsonl(
        tmp_path / "manifest.jsonl", [{"id": key} for key in old + [f"cam_unlabeled_{i:03d}" for i in range(4)]]
    )
    read = []

    def at_version(path, tag, scratch, *, param):
        read.append((path.name, tag, param))
        return workspace / "model" / "model.pt" if path.name == "model.pt" else tmp_path / "manifest.jsonl"

    monkeypatch.setattr(stage, "file_at_version", at_version)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"monitor": {**MONITOR, "model": "model@v1"}}))
    stage.main(["--params", str(params), "--model", str(workspace / "model"), "--interim", str(workspace / "interim"),
                "--shards", str(workspace / "shards"), "--scratch", str(tmp_path / "scratch"), "--out", str(tmp_path / "out"),
                "--metrics", str(tmp_path / "metrics.json"), "--plots", str(tmp_path / "plots")])  # fmt: skip
    assert sorted(read) == [("manifest.jsonl", "model@v1", "monitor.model"), ("model.pt", "model@v1", "monitor.model")]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["cam/incoming"] == 6 and "sample/incoming" not in metrics  # sample: nothing new since v1
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["model"] == "model@v1"
