"""The dlib embedding backend: dlib's pretrained ResNet on synthetic faces with known landmarks.

Faces come from ``faceops.sample`` (exact landmarks, known identities); no file outside the test's
temporary folder is read. One descriptor costs ~0.15 s of CPU, so the tests share a handful of faces.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from faceops.align import align_face, template_for_size
from faceops.io.embeddings import read_embeddings
from faceops.io.shards import ShardSample, write_index, write_shards
from faceops.labels import sample_id
from faceops.models.dlib_face import EMBEDDING_DIM, DlibFaceEmbedder, face_rectangle
from faceops.sample import generate_sample
from stages import embed as embed_stage

REPO = Path(__file__).resolve().parents[1]
needs_dlib = pytest.mark.skipif(
    importlib.util.find_spec("dlib") is None or importlib.util.find_spec("face_recognition_models") is None,
    reason="dlib backend not installed (pip install -e '.[dlib]')",
)
# Lowest cosine between a synthetic face and its mirror image seen on 48 faces (seeds 1 and 2, 12
# identities x 2 photos) was 0.964 (median 0.99), while different identities scored 0.90 (median):
# a mirror image must stay above 0.95.
FLIP_MIN_COSINE = 0.95
MIRRORED_ORDER = [1, 0, 2, 4, 3]  # image-left and image-right swap under a horizontal flip


def _rgb(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR_RGB)


def _mirrored(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image flipped left-right, with its landmarks moved and renamed accordingly."""
    points = np.asarray(landmarks, dtype=np.float64).copy()
    points[:, 0] = image.shape[1] - 1 - points[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), points[MIRRORED_ORDER]


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(identity, RGB photo, landmarks) of 3 synthetic people x 2 photos."""
    return [(im.labels["identity"], _rgb(im.jpeg), np.asarray(im.labels["landmarks"]))
            for im in generate_sample(3, 2, seed=0)]  # fmt: skip


@pytest.fixture(scope="module")
def embedder() -> DlibFaceEmbedder:
    return DlibFaceEmbedder(workers=1, batch_size=4)


@pytest.fixture(scope="module")
def vectors(embedder, photos) -> np.ndarray:
    return embedder.embed((image, points) for _, image, points in photos)


@needs_dlib
def test_embeddings_are_128d_float32_unit_vectors(vectors, photos):
    assert vectors.shape == (len(photos), EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


@needs_dlib
def test_same_input_gives_the_same_bytes_whatever_the_batching_or_workers(embedder, vectors, photos):
    faces = [(image, points) for _, image, points in photos]
    assert embedder.embed(faces).tobytes() == vectors.tobytes()
    assert DlibFaceEmbedder(workers=1, batch_size=1).embed(faces).tobytes() == vectors.tobytes()
    assert DlibFaceEmbedder(workers=2, batch_size=2).embed(faces).tobytes() == vectors.tobytes()


@needs_dlib
def test_mirror_image_is_closer_than_another_person(embedder, vectors, photos):
    flipped = embedder.embed(_mirrored(image, points) for _, image, points in photos)
    to_mirror = np.sum(vectors * flipped, axis=1)
    assert to_mirror.min() > FLIP_MIN_COSINE, to_mirror
    identities = np.array([identity for identity, _, _ in photos])
    other = identities[:, None] != identities[None, :]
    closest_other = np.where(other, vectors @ vectors.T, -1.0).max(axis=1)
    assert (to_mirror > closest_other).all(), (to_mirror, closest_other)


def test_face_rectangle_is_a_square_around_the_landmarks():
    points = template_for_size(112)
    left, top, right, bottom = face_rectangle(points)
    assert right - left == bottom - top > 0
    assert (left < points[:, 0].min() and points[:, 0].max() < right and top < points[:, 1].min()
            and points[:, 1].max() < bottom)  # fmt: skip
    # Roll does not change the size: turn the points 30 degrees about their centroid.
    turn = np.deg2rad(30.0)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    centre = points.mean(axis=0)
    turned = face_rectangle((points - centre) @ rotation.T + centre)
    assert abs((turned[2] - turned[0]) - (right - left)) <= 1


@needs_dlib
@pytest.mark.parametrize(
    ("shift", "message"),
    [((1000.0, 0.0), "wholly outside"), ((0.0, -1000.0), "wholly outside")],
)
def test_landmarks_of_another_image_are_refused(embedder, photos, shift, message):
    _, image, points = photos[0]
    with pytest.raises(ValueError, match=message):
        embedder.embed([(image, points + np.array(shift))])


@needs_dlib
def test_invalid_faces_are_refused_with_the_reason(embedder, photos):
    _, image, points = photos[0]
    with pytest.raises(ValueError, match="coincide"):
        embedder.chip(image, np.repeat(points[:1], 5, axis=0))
    with pytest.raises(ValueError, match="finite"):
        embedder.chip(image, np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="uint8"):
        embedder.chip(image.astype(np.float32), points)


@needs_dlib
def test_face_cut_by_the_border_and_tiny_faces_are_embedded(embedder, photos):
    """Documented behaviour: outside pixels are black, a tiny face is scaled up; both still give a vector."""
    _, image, points = photos[0]
    centre = points.mean(axis=0).round().astype(int)
    cut = np.ascontiguousarray(image[:, centre[0] :])  # the image-left half of the face is gone
    scale = 16 / max(image.shape[:2])
    tiny = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    found = embedder.embed([(cut, points - [centre[0], 0]), (tiny, points * scale)])
    assert found.shape == (2, EMBEDDING_DIM)
    np.testing.assert_allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("module", ["dlib", "face_recognition_models"])
def test_missing_packages_name_the_install_command(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` fail as if not installed
    with pytest.raises(ImportError, match=r"pip install -e '\.\[dlib\]'"):
        DlibFaceEmbedder(workers=1)


def _write_source(shards: Path, photos) -> dict[str, tuple[str, np.ndarray]]:
    """Shards of source ``tiny`` as the shard stage writes them: aligned crops, 2 people train, 1 test.

    Returns:
        id -> (identity, the aligned crop as stored).
    """
    folder, crops, splits = shards / "tiny", {}, {}
    for split, people in (("train", {"id_0000", "id_0001"}), ("test", {"id_0002"})):
        samples = []
        for n, (identity, image, points) in enumerate(photos):
            if identity in people:
                key = sample_id("tiny", f"{identity}/{n}.jpg")
                ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(align_face(image, points), cv2.COLOR_RGB2BGR),
                                        [cv2.IMWRITE_JPEG_QUALITY, 95])  # fmt: skip
                assert ok
                samples.append(ShardSample(key, jpeg.tobytes(), {"id": key, "source": "tiny", "identity": identity}))
                crops[key] = (identity, _rgb(jpeg.tobytes()))
        infos = write_shards(samples, folder, split=split, maxcount=2)
        splits[split] = {"shards": [i.name for i in infos], "samples": len(samples), "identities": len(people)}
    write_index(folder, {"format": 1, "source": "tiny", "samples": len(crops), "splits": splits})
    return crops


@needs_dlib
def test_stage_writes_sets_that_cluster_reads(tmp_path, monkeypatch, photos, embedder):
    crops = _write_source(tmp_path / "shards", photos)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["embed"] = {"backend": "dlib", "sources": ["tiny"], "splits": ["train", "test", "unlabeled"],
                       "batch_size": 3}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out, metrics = tmp_path / "embeddings", tmp_path / "embed.json"
    argv = ["--params", str(tmp_path / "params.yaml"), "--model", str(tmp_path / "no-model"), "--shards",
            str(tmp_path / "shards"), "--out", str(out), "--metrics", str(metrics), "--cache", str(tmp_path / "cache")]
    embed_stage.main(argv)

    train, test = read_embeddings(out / "tiny", "train"), read_embeddings(out / "tiny", "test")
    assert train.ids == sorted(train.ids) and len(train.ids) == 4 and len(test.ids) == 2
    for found in (train, test):
        assert found.identities == [crops[i][0] for i in found.ids]
        expected = embedder.embed((crops[i][1], template_for_size(112)) for i in found.ids)
        assert found.vectors.tobytes() == expected.tobytes()
    found_metrics = {k: v for k, v in json.loads(metrics.read_text()).items() if not k.startswith("env/")}
    assert found_metrics == {"backend": "dlib", "tiny/train/samples": 4, "tiny/train/dim": 128,
                             "tiny/test/samples": 2, "tiny/test/dim": 128, "tiny/unlabeled/samples": 0}  # fmt: skip

    first = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for path in first:
        path.write_bytes(b"stale")
    monkeypatch.setattr(embed_stage, "_run", lambda *args: pytest.fail("same fingerprint must not embed again"))
    embed_stage.main(argv)  # restored from the cache, byte for byte
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == first


# ---------------------------------------------------------------- embed.runner: dask (one shard per task)

needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="the dask extra is not installed")


def _embed_argv(tmp_path: Path, name: str, section: dict, model: Path) -> list[str]:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["embed"] = {"sources": ["tiny"], "splits": ["train", "test"], **section}
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(params))
    return ["--params", str(tmp_path / f"{name}.yaml"), "--model", str(model), "--shards", str(tmp_path / "shards"),
            "--out", str(tmp_path / name), "--metrics", str(tmp_path / f"{name}.json")]  # fmt: skip


def _tiny_model(folder: Path) -> Path:
    """An untrained ``swinface_cpu`` exported as the train stage would (weights from a fixed seed)."""
    import torch

    from faceops.io.checkpoint import save_checkpoint
    from faceops.models import create_model
    from faceops.train import model_record

    torch.manual_seed(0)
    model = create_model("swinface_cpu", mlff_width=16).eval()
    record = model_record(model, "swinface_cpu", {"mlff_width": 16}, identities=["a", "b"], step=1, params={},
                          init="scratch")  # fmt: skip
    save_checkpoint(folder / "model.pt", record, kind="model")
    return folder


@needs_dlib
@needs_dask
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dask_runner_gives_the_in_process_embeddings(tmp_path, photos):
    """dlib: the same bytes; the trained model: the same rows, vectors equal to float rounding (batches
    end at shard boundaries on Dask). 3 + 1 shards of 2 faces: several tasks per split."""
    _write_source(tmp_path / "shards", photos)
    model = _tiny_model(tmp_path / "model")
    for backend in ("dlib", "swinface"):
        here, there = f"{backend}_here", f"{backend}_dask"
        embed_stage.main(_embed_argv(tmp_path, here, {"backend": backend, "batch_size": 3}, model))
        embed_stage.main(_embed_argv(tmp_path, there, {"backend": backend, "batch_size": 3, "runner": "dask"}, model))
        metrics = [json.loads((tmp_path / f"{name}.json").read_text()) for name in (here, there)]
        assert metrics[0] == metrics[1]
        for split in ("train", "test"):
            expected = read_embeddings(tmp_path / here / "tiny", split)
            found = read_embeddings(tmp_path / there / "tiny", split)
            assert found.ids == expected.ids and found.identities == expected.identities
            if backend == "dlib":
                assert found.vectors.tobytes() == expected.vectors.tobytes()
            else:
                assert np.min(np.sum(found.vectors * expected.vectors, axis=1)) > 0.9999


def test_dask_embedding_refuses_what_cannot_work(tmp_path):
    from faceops.embed import concat_sets, embed_shards_on_dask

    with pytest.raises(ValueError, match="at least one shard"):
        embed_shards_on_dask([], backend="dlib", batch_size=4)
    with pytest.raises(ValueError, match="needs model_file"):
        embed_shards_on_dask([tmp_path / "a.tar"], backend="swinface", batch_size=4)
    with pytest.raises(ValueError, match="at least one embedding set"):
        concat_sets([])
