"""Stage `keypoints` with COCO bodies beside faces: crops, manifest rows, metrics, models; align ignores bodies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import stages.align as align_stage
from faceops.align import AlignResult
from faceops.align.crop import box_matrix, to_crop
from faceops.io.jsonl import read_jsonl, write_jsonl
from faceops.io.layout import COCO_ANNOTATIONS, LABELS_CSV, MANIFEST, QUARANTINE
from faceops.keypoints import KeypointModel, pck
from faceops.labels import LANDMARK_COLUMNS
from stages import ingest as ingest_stage
from stages import keypoints as keypoints_stage

SIDE = 96
IMAGES = 12
FACES = 6
FACE_POINTS = np.array([[38.0, 42.0], [58.0, 42.0], [48.0, 54.0], [40.0, 66.0], [56.0, 66.0]])
# A standing stick figure in COCO's joint order (nose, eyes, ears, shoulders, elbows, wrists, hips,
# knees, ankles), in units of its height, x from its centre line.
FIGURE = np.array([
    [0.0, 0.08], [-0.03, 0.06], [0.03, 0.06], [-0.06, 0.07], [0.06, 0.07], [-0.12, 0.2], [0.12, 0.2],
    [-0.16, 0.36], [0.16, 0.36], [-0.18, 0.5], [0.18, 0.5], [-0.08, 0.52], [0.08, 0.52], [-0.09, 0.75],
    [0.09, 0.75], [-0.1, 0.97], [0.1, 0.97],
])  # fmt: skip
LIMBS = [(0, 5), (0, 6), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12), (11, 13),
         (13, 15), (12, 14), (14, 16)]  # fmt: skip


def _person(rng: np.random.Generator, hidden: int) -> tuple[np.ndarray, list[float], np.ndarray]:
    """A figure at a random place and size: joints [17, 3] (x, y, v; ``hidden`` with v=0), bbox, points [17, 2]."""
    height = rng.uniform(55, 80)
    top_left = rng.uniform([height * 0.2, 2], [SIDE - height * 0.2, SIDE - height - 2])
    xy = FIGURE * height + top_left
    visible = np.full(17, 2.0)
    visible[rng.choice(17, hidden, replace=False)] = 0
    joints = np.concatenate([xy, visible[:, None]], axis=1)
    joints[visible == 0, :2] = 0.0  # COCO writes invisible joints as (0, 0, 0)
    low, high = xy.min(axis=0) - 2, xy.max(axis=0) + 2
    return joints, [*low.round(2).tolist(), *(high - low).round(2).tolist()], xy


def _draw(xy: np.ndarray, image: np.ndarray) -> None:
    for a, b in LIMBS:
        cv2.line(image, tuple(int(v) for v in xy[a]), tuple(int(v) for v in xy[b]), (240, 240, 240), 2)
    cv2.circle(image, tuple(int(v) for v in xy[0]), 5, (200, 120, 60), -1)


def _write_faces(root: Path, rng: np.random.Generator) -> None:
    """A labels_csv source of drawn faces with given landmarks (the face task beside the body one)."""
    root.mkdir(parents=True)
    lines = [",".join(["path", *LANDMARK_COLUMNS])]
    for k in range(FACES):
        points = FACE_POINTS + rng.uniform(-4, 4, 2)
        image = np.full((SIDE, SIDE, 3), 80 + 8 * k, np.uint8)  # distinct photos: none is a duplicate
        cv2.ellipse(image, tuple(int(v) for v in points.mean(axis=0)), (22, 30), 0, 0, 360, (170, 140, 120), -1)
        for x, y in points:
            cv2.circle(image, (int(x), int(y)), 3, (30, 30, 30), -1)
        cv2.imwrite(str(root / f"{k}.png"), image)
        lines.append(",".join([f"{k}.png", *(f"{v:.2f}" for v in points.ravel())]))
    (root / LABELS_CSV).write_text("\n".join(lines) + "\n")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """12 stick-figure photos in COCO layout (11 labelled persons, one unlabelled, one empty photo) and 6 faces."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data" / "raw" / "coco"
    root.mkdir(parents=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    for k in range(IMAGES):
        image = np.full((SIDE, SIDE, 3), 40, np.uint8)
        image[:, :, 2] = rng.integers(30, 90)
        persons = [] if k == IMAGES - 1 else [_person(rng, hidden=k % 4)]
        if k == 0:
            persons.append(_person(rng, hidden=17))  # annotated box, no visible joint: an unlabelled target
        for joints, box, xy in persons:
            _draw(xy, image)
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": k + 1, "category_id": 1,
                                        "iscrowd": 0, "bbox": box, "area": box[2] * box[3],
                                        "num_keypoints": int((joints[:, 2] > 0).sum()),
                                        "keypoints": joints.ravel().tolist()})  # fmt: skip
        cv2.imwrite(str(root / f"{k}.png"), image)
        coco["images"].append({"id": k + 1, "file_name": f"{k}.png", "width": SIDE, "height": SIDE})
    (root / COCO_ANNOTATIONS).write_text(json.dumps(coco))
    _write_faces(tmp_path / "data" / "raw" / "faces", rng)
    params = {
        "base": {"seed": 0},
        "ingest": {"sources": [{"name": "coco", "format": "coco_keypoints"},
                               {"name": "faces", "format": "labels_csv"}], "workers": 1},
        "keypoints": {"sources": ["coco", "faces"], "epochs": 1, "batch_size": 4, "max_unlabeled": 8,
                      "holdout_fraction": 0.5},
    }  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    data = tmp_path / "data"
    ingest_stage.main(["--params", str(tmp_path / "params.yaml"), "--raw", str(data / "raw"), "--out",
                       str(data / "interim"), "--metrics", str(tmp_path / "metrics" / "ingest.json")])  # fmt: skip
    keypoints_stage.main(["--params", str(tmp_path / "params.yaml"), "--raw", str(data / "raw"),
                          "--interim", str(data / "interim"), "--out", str(data / "keypoints"),
                          "--model-out", str(tmp_path / "models"),
                          "--metrics", str(tmp_path / "metrics" / "keypoints.json")])  # fmt: skip
    return tmp_path


def test_body_keypoints_stage(workspace: Path) -> None:
    interim = {row["id"]: row for row in read_jsonl(workspace / "data" / "interim" / MANIFEST)}
    manifest = list(read_jsonl(workspace / "data" / "keypoints" / MANIFEST))
    metrics = json.loads((workspace / "metrics" / "keypoints.json").read_text())

    assert len({row["id"] for row in manifest}) == len(manifest)
    faces = [row for row in manifest if row["kind"] == "face"]
    assert {row["source"] for row in faces} == {"faces"} and all(len(row["landmarks"]) == 5 for row in faces)
    manifest = [row for row in manifest if row["kind"] == "body"]
    assert manifest and {row["source"] for row in manifest} == {"coco"}
    for row in manifest:
        points = np.asarray(row["keypoints"])
        assert points.shape == (17, 2) and len(row["confidence"]) == 17
        assert np.all(points >= 0) and np.all(points <= SIDE - 1)
        assert "landmarks" not in row and row["image_id"] in interim
        assert row["origin"] in {"heldout", "unlabeled"}

    # every annotated person with a visible joint is labelled or held out; the unseen one is a target
    coco_persons = [p for r in interim.values() if r["source"] == "coco" for p in r["labels"]["persons"]]
    labelled_persons = [p for p in coco_persons if any(v for *_, v in p["keypoints"])]
    assert metrics["body/labelled"] + metrics["body/heldout"] == len(labelled_persons) == IMAGES - 1
    assert metrics["body/labelled"] > 0 and metrics["body/heldout"] > 0
    unlabeled = [row for row in manifest if row["origin"] == "unlabeled"]
    assert len(unlabeled) == metrics["body/unlabeled"] == 1
    assert interim[unlabeled[0]["image_id"]]["labels"]["persons"][unlabeled[0]["person"]]["keypoints"][0][2] == 0
    quarantine = list(read_jsonl(workspace / "data" / "keypoints" / QUARANTINE))
    assert [(q["path"], q["reason"]) for q in quarantine] == [(f"{IMAGES - 1}.png", "no_person")]
    assert metrics["body/no_person"] == 1

    # scores: in range, face keys beside body keys, and the body PCK matches the manifest's image-coordinate predictions
    assert 0.0 <= metrics["body/heldout/oks_ap"] <= 1.0
    assert 0.0 <= metrics["body/heldout/pck@0.1"] <= 1.0
    assert metrics["labelled"] + metrics["heldout"] == FACES and metrics["heldout"] == len(faces)
    assert metrics["heldout/nme"] > 0.0  # the face keys stay as they were, beside the body ones
    # the supervised-only baseline is scored on the same held-out crops, for both tasks
    assert metrics["supervised/heldout/nme"] > 0.0 and 0.0 <= metrics["supervised/body/heldout/oks_ap"] <= 1.0
    held = [row for row in manifest if row["origin"] == "heldout"]
    persons = [interim[row["image_id"]]["labels"]["persons"][row["person"]] for row in held]
    truth = np.array([p["keypoints"] for p in persons], dtype=np.float64)
    size = np.array([max(p["bbox"][2:]) for p in persons])
    found = np.array([row["keypoints"] for row in held])
    expected = pck(found, truth[..., :2], size, alpha=0.1, visible=truth[..., 2] > 0)
    assert metrics["body/heldout/pck@0.1"] == pytest.approx(expected, abs=0.02)  # manifest points are rounded

    models = workspace / "models"
    joints = {name: KeypointModel.from_record(torch.load(models / name, weights_only=True)).num_joints
              for name in keypoints_stage.MODEL_FILES.values()}  # fmt: skip
    assert joints == {keypoints_stage.MODEL_FILES["body"]: 17, keypoints_stage.MODEL_FILES["face"]: 5}  # one per task


def test_align_uses_face_pseudo_landmarks_and_ignores_body_rows(tmp_path: Path, monkeypatch) -> None:
    """A body row whose id matches an image must not become that image's landmarks; face rows still do."""
    interim, keypoints = tmp_path / "interim", tmp_path / "keypoints"
    rows = [{"id": f"src_{k}", "source": "src", "path": f"{k}.jpg", "sha256": str(k), "labels": {"identity": None}}
            for k in range(2)]  # fmt: skip
    face = [[30.0, 40.0], [60.0, 40.0], [45.0, 55.0], [33.0, 70.0], [57.0, 70.0]]
    pseudo = [{"id": "src_0", "source": "src", "origin": "unlabeled", "kind": "face", "landmarks": face,
               "confidence": [0.9] * 5},
              {"id": "src_1", "source": "src", "origin": "unlabeled", "kind": "body",
               "keypoints": [[1.0, 2.0]] * 17, "confidence": [0.9] * 17}]  # fmt: skip
    for folder, content in ((interim, rows), (keypoints, pseudo)):
        folder.mkdir()
        write_jsonl(folder / MANIFEST, content)
    seen = {}

    def fake_align_many(jobs, **_):
        seen.update({job.id: job.given_landmarks for job in jobs})
        return [AlignResult(id=job.id, ok=False, reason="no_face", detail="test", landmarks=None,
                            landmark_source=None, score=None, jpeg=None) for job in jobs]  # fmt: skip

    monkeypatch.setattr(align_stage, "align_many", fake_align_many)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"align": {"workers": 1}}))
    align_stage.main(["--params", str(tmp_path / "params.yaml"), "--raw", str(tmp_path / "raw"),
                      "--interim", str(interim), "--keypoints", str(keypoints), "--cache", str(tmp_path / "cache"),
                      "--out", str(tmp_path / "aligned"), "--metrics", str(tmp_path / "align.json")])  # fmt: skip
    np.testing.assert_allclose(seen["src_0"], face)
    assert seen["src_1"] is None  # body row ignored: the detector decides


def test_box_matrix_centres_the_box_and_fits_its_longer_side() -> None:
    box = np.array([10.0, 20.0, 30.0, 60.0])  # x, y, w, h: a tall person box
    m = box_matrix(box, 64, scale=1.25)
    np.testing.assert_allclose(to_crop(np.array([25.0, 50.0]), m), [32.0, 32.0])
    top, bottom = to_crop(np.array([[25.0, 20.0], [25.0, 80.0]]), m)
    np.testing.assert_allclose(bottom[1] - top[1], 64 / 1.25)  # longer side spans 1 / scale of the crop
    shifted = box_matrix(box, 64, scale=1.25, zoom=2.0, shift=(0.1, 0.0))
    np.testing.assert_allclose(to_crop(np.array([25.0 + 0.1 * 150.0, 50.0]), shifted), [32.0, 32.0])
    with pytest.raises(ValueError, match="w or h > 0"):
        box_matrix(np.array([1.0, 2.0, 0.0, 0.0]), 64)


def _digests(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def test_finished_run_is_reused_unless_its_own_inputs_change(workspace: Path, monkeypatch) -> None:
    data, metrics = workspace / "data", workspace / "metrics" / "keypoints.json"
    argv = ["--params", str(workspace / "params.yaml"), "--raw", str(data / "raw"), "--interim", str(data / "interim"),
            "--out", str(data / "keypoints"), "--model-out", str(workspace / "models"), "--metrics", str(metrics),
            "--cache", str(workspace / "cache")]  # fmt: skip
    keypoints_stage.main(argv)  # trains and keeps the finished run
    before = _digests(data / "keypoints", workspace / "models", metrics.parent)
    # a photo of a source the stage does not read arrives: DVC re-runs the stage, nothing here changes
    manifest = data / "interim" / MANIFEST
    other = {"id": "other/new", "source": "other", "path": "new.png", "sha256": "0" * 64, "labels": {}}
    manifest.write_text(manifest.read_text() + json.dumps(other) + "\n")
    runs = []
    monkeypatch.setattr(keypoints_stage, "_run", lambda *args: runs.append(args))
    for output in (data / "keypoints", workspace / "models"):
        shutil.rmtree(output)
    keypoints_stage.main(argv)
    assert runs == [] and _digests(data / "keypoints", workspace / "models", metrics.parent) == before
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["keypoints"]["epochs"] = 2  # its own input changed: it trains again
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    keypoints_stage.main(argv)
    assert len(runs) == 1
