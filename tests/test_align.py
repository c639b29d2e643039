"""Tests of faceops.align: Umeyama, the template warp, the detector interface, the cached batch runner,
and the plain-JPEG decode path of faceops.io.images that the runner relies on for speed."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from faceops.align import (
    AlignJob,
    DegenerateLandmarksError,
    DetectorSpec,
    Face,
    align_face,
    align_many,
    detect_faces,
    estimate_similarity,
    template_for_size,
)
from faceops.align import detector as detector_module
from faceops.align import mtcnn as mtcnn_module
from faceops.align import runner as runner_module
from faceops.io import align_cache
from faceops.io import images as images_module
from faceops.io.images import ImageRejected, decode_image
from faceops.labels import ARCFACE_TEMPLATE_112
from faceops.sample import generate_sample


def _random_similarity(rng: np.random.Generator) -> np.ndarray:
    """[2, 3] similarity with scale in [0.5, 3], any rotation, translation in [-100, 100]."""
    angle, scale = rng.uniform(-np.pi, np.pi), rng.uniform(0.5, 3.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.hstack([scale * rotation, rng.uniform(-100, 100, size=(2, 1))])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


# ---------------------------------------------------------------- Umeyama


@pytest.mark.parametrize("seed", range(5))
def test_similarity_recovers_known_transform(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = _random_similarity(rng)
    src = rng.uniform(0, 200, size=(7, 2))
    np.testing.assert_allclose(estimate_similarity(src, _apply(truth, src)), truth, atol=1e-9, rtol=0)


def test_similarity_with_noise_is_close_and_beats_identity() -> None:
    rng = np.random.default_rng(0)
    truth = _random_similarity(rng)
    src = rng.uniform(0, 200, size=(50, 2))
    dst = _apply(truth, src) + rng.normal(0, 0.5, size=src.shape)
    estimate = estimate_similarity(src, dst)
    np.testing.assert_allclose(estimate[:, :2], truth[:, :2], atol=0.02)
    # Least squares: the estimate fits the noisy points at least as well as the true transform.
    residual = np.sum((_apply(estimate, src) - dst) ** 2)
    assert residual <= np.sum((_apply(truth, src) - dst) ** 2) + 1e-9


def test_similarity_never_reflects() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, size=(5, 2))
    mirrored = src * np.array([-1.0, 1.0])
    matrix = estimate_similarity(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0
    np.testing.assert_allclose(matrix[0, 0], matrix[1, 1], atol=1e-12)  # rotation block [[a, -b], [b, a]]
    np.testing.assert_allclose(matrix[0, 1], -matrix[1, 0], atol=1e-12)


def test_similarity_rejects_coincident_points() -> None:
    with pytest.raises(DegenerateLandmarksError, match="no spread"):
        estimate_similarity(np.full((5, 2), 3.0), ARCFACE_TEMPLATE_112)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        estimate_similarity(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="finite"):
        estimate_similarity(np.full((5, 2), np.nan), ARCFACE_TEMPLATE_112)


# ---------------------------------------------------------------- warp


def _draw_dots(shape: tuple[int, int], centres: np.ndarray, sigma: float) -> np.ndarray:
    """[H, W, 3] uint8 image of Gaussian dots (peak 255) centred at sub-pixel ``centres`` [K, 2]."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    image = np.zeros(shape)
    for x, y in centres:
        image = np.maximum(image, np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)))
    return np.repeat(np.rint(image * 255).astype(np.uint8)[:, :, None], 3, axis=2)


def _dot_centres(image: np.ndarray, near: np.ndarray, radius: int = 6) -> np.ndarray:
    """Intensity-weighted centroid of the dot in a window around each point of ``near`` [K, 2]."""
    gray = image[:, :, 0].astype(np.float64)
    centres = []
    for x, y in np.rint(near).astype(int):
        window = gray[y - radius : y + radius + 1, x - radius : x + radius + 1]
        ys, xs = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        centres.append([x + (xs * window).sum() / window.sum(), y + (ys * window).sum() / window.sum()])
    return np.array(centres)


@pytest.mark.parametrize("size", [112, 224])
def test_align_face_puts_landmarks_on_template(size: int) -> None:
    rng = np.random.default_rng(size)
    placement = _random_similarity(rng)
    placement[:, :2] *= 1.5 / np.sqrt(abs(np.linalg.det(placement[:, :2])))  # scale 1.5
    placement[:, 2] = 0
    placed = _apply(placement, ARCFACE_TEMPLATE_112)
    placement[:, 2] = 150 - placed.mean(axis=0)  # centre the face in a 300 x 300 canvas
    landmarks = _apply(placement, ARCFACE_TEMPLATE_112)
    canvas = _draw_dots((300, 300), landmarks, sigma=3.0)

    face = align_face(canvas, landmarks, size=size)

    assert face.shape == (size, size, 3) and face.dtype == np.uint8
    template = template_for_size(size)
    np.testing.assert_allclose(template, ARCFACE_TEMPLATE_112 * size / 112)
    error = np.linalg.norm(_dot_centres(face, template, radius=4 * size // 112) - template, axis=1)
    assert error.max() < 0.5, f"dots off the template by {error} px"


def test_align_face_is_identity_on_the_template_crop() -> None:
    crop = np.random.default_rng(0).integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    aligned = align_face(crop, ARCFACE_TEMPLATE_112)
    assert np.abs(aligned.astype(int) - crop).max() <= 1


def test_align_face_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        align_face(np.zeros((50, 50, 3), np.float32), ARCFACE_TEMPLATE_112)
    with pytest.raises(ValueError, match=r"\[5, 2\]"):
        align_face(np.zeros((50, 50, 3), np.uint8), np.zeros((4, 2)))


# ---------------------------------------------------------------- detector interface (fake backend)


class FakeDetector:
    """Returns the same configured faces for every image and counts its calls."""

    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces
        self.calls = 0

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        self.calls += 1
        return list(self.faces)


def _face(offset: float, scale: float, score: float) -> Face:
    landmarks = ARCFACE_TEMPLATE_112 * scale + offset
    box = np.array([offset, offset, offset + 112 * scale, offset + 112 * scale])
    return Face(box=box, landmarks=landmarks, score=score)


def _fake_version() -> str:
    return "fake-1"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeDetector:
    """A detector registered as "fake" for this test only, already built, so calls can be counted."""
    instance = FakeDetector([_face(10, 1.0, 0.99)])
    spec = DetectorSpec(name="fake", factory=lambda: instance, version=_fake_version)
    monkeypatch.setitem(detector_module._REGISTRY, "fake", spec)
    monkeypatch.setitem(detector_module._BUILT, "fake", instance)
    return instance


def test_detect_faces_filters_and_sorts(fake: FakeDetector) -> None:
    fake.faces = [_face(0, 0.5, 0.95), _face(5, 1.0, 0.5), _face(20, 0.8, 0.97)]
    image = np.zeros((160, 160, 3), np.uint8)
    faces = detect_faces(image, detector="fake", min_score=0.9)
    assert [f.score for f in faces] == [0.97, 0.95]  # low score dropped, largest box first
    assert all(isinstance(f.box, np.ndarray) and f.landmarks.shape == (5, 2) for f in faces)


def test_unknown_detector_names_registered_ones() -> None:
    with pytest.raises(ValueError, match="mtcnn"):
        detect_faces(np.zeros((20, 20, 3), np.uint8), detector="mtcn")


def test_missing_backend_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise mtcnn_module.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mtcnn_module.importlib.metadata, "version", not_installed)
    with pytest.raises(ImportError, match=r"facenet-pytorch.*pip install --no-deps"):
        mtcnn_module.mtcnn_version()
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    with pytest.raises(ImportError, match=r"pip install --no-deps facenet-pytorch"):
        mtcnn_module.MTCNNDetector()


def test_import_needs_neither_torch_nor_facenet() -> None:
    code = (
        "import sys; sys.modules['facenet_pytorch'] = None; import faceops.align; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------- batch runner + cache


def _write_photos(folder: Path, count: int, seed: int = 0) -> list[AlignJob]:
    """``count`` 160 x 160 noise JPEGs with given landmarks (template at offset 24) as jobs."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(count):
        path = folder / f"img{i}.jpg"
        pixels = cv2.GaussianBlur(rng.integers(0, 256, size=(160, 160, 3), dtype=np.uint8), (5, 5), 0)
        cv2.imwrite(str(path), pixels)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        jobs.append(AlignJob(f"t_{i}", "t", path, digest, ARCFACE_TEMPLATE_112 + 24))
    return jobs


def _run(jobs: list[AlignJob], cache: Path, **options: object) -> list:
    settings = dict(detector="fake", min_score=0.9, multiple_faces="largest", use_given_landmarks=False,
                    jpeg_quality=90, max_pixels=10**7, workers=1)  # fmt: skip
    settings.update(options)
    return align_many(jobs, cache_dir=cache, **settings)


def test_runner_second_run_is_served_from_cache(tmp_path: Path, fake: FakeDetector) -> None:
    jobs = _write_photos(tmp_path, 3)
    seen: list[int] = []
    first = _run(jobs, tmp_path / "cache", progress=seen.append)
    assert fake.calls == 3 and sum(seen) == 3
    assert all(r.ok and r.landmark_source == "detected" and r.score == pytest.approx(0.99) for r in first)
    decoded = cv2.imdecode(np.frombuffer(first[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (112, 112, 3)

    second = _run(jobs, tmp_path / "cache")
    assert fake.calls == 3, "a warm run must not call the detector"
    assert [r.jpeg for r in second] == [r.jpeg for r in first]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.landmarks, b.landmarks)

    (tmp_path / "new").mkdir()
    more = jobs + _write_photos(tmp_path / "new", 1, seed=1)  # one new photo: only it is computed
    _run(more, tmp_path / "cache")
    assert fake.calls == 4


def test_runner_key_follows_the_settings(tmp_path: Path, fake: FakeDetector) -> None:
    jobs = _write_photos(tmp_path, 2)
    _run(jobs, tmp_path / "cache")
    _run(jobs, tmp_path / "cache", min_score=0.5)
    assert fake.calls == 4, "min_score changes detected results, so it must change the key"
    big = _run(jobs, tmp_path / "cache", size=128)
    assert fake.calls == 6 and cv2.imdecode(np.frombuffer(big[0].jpeg, np.uint8), 1).shape == (128, 128, 3)
    # With given landmarks the detector settings cannot matter: no detector call, and min_score is not in the key.
    given = _run(jobs, tmp_path / "cache", use_given_landmarks=True)
    _run(jobs, tmp_path / "cache", use_given_landmarks=True, min_score=0.1)
    assert fake.calls == 6
    assert all(r.landmark_source == "given" and r.score is None for r in given)
    assert len(align_cache.CacheIndex(tmp_path / "cache")) == 8  # 4 settings x 2 images


def _entry_location(cache: Path, key: str | None = None) -> tuple[Path, Path, str, int, int]:
    """(pack, index, key, offset, length) of ``key``'s entry, or of the only entry, in a cache of one pack."""
    (index,) = (cache / align_cache.PACKS).glob("*.index")
    lines = [line.split() for line in index.read_text().splitlines()]
    if key is None:
        ((key, offset, length),) = lines
    else:
        (offset, length), = [(o, n) for k, o, n in lines if k == key]
    return index.with_suffix(".pack"), index, key, int(offset), int(length)


def _damage(cache: Path, damage: str) -> None:
    pack, index, key, offset, length = _entry_location(cache)
    data = pack.read_bytes()
    record_end = data.index(b"\n", offset) + 1
    if damage == "record_garbage":
        pack.write_bytes(data[:offset] + b"x" * length)
    elif damage == "torn_in_jpeg":  # what a crash without fsync can leave: a prefix of the entry
        os.truncate(pack, record_end + 100)
    elif damage == "jpeg_gone":
        os.truncate(pack, record_end)
    elif damage == "jpeg_byte_flipped":  # same length, other bytes: only the sha256 catches it
        pack.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    elif damage == "pack_missing":
        pack.unlink()
    elif damage == "index_line_torn":  # the index line lost its end: the entry is unreachable, not misread
        os.truncate(index, index.stat().st_size - 1)
    elif damage == "index_length_wrong":
        index.write_text(f"{key} {offset} {length - 1}\n")
    else:
        pack.write_bytes(data.replace(key.encode(), b"0" * 64, 1))


@pytest.mark.parametrize(
    "damage", ["record_garbage", "torn_in_jpeg", "jpeg_gone", "jpeg_byte_flipped", "pack_missing",
               "index_line_torn", "index_length_wrong", "other_key"]
)  # fmt: skip
def test_runner_recomputes_corrupt_entries(tmp_path: Path, fake: FakeDetector, damage: str) -> None:
    jobs = _write_photos(tmp_path, 1)
    first = _run(jobs, tmp_path / "cache")
    key = _entry_location(tmp_path / "cache")[2]
    _damage(tmp_path / "cache", damage)
    assert align_cache.CacheIndex(tmp_path / "cache").read(key) is None
    again = _run(jobs, tmp_path / "cache")
    assert fake.calls == 2 and again[0].jpeg == first[0].jpeg
    assert align_cache.CacheIndex(tmp_path / "cache").read(key)["jpeg"] == first[0].jpeg, "the entry is written again"
    third = _run(jobs, tmp_path / "cache")
    assert fake.calls == 2 and third[0].jpeg == first[0].jpeg, "the new copy is used, whatever the damaged one holds"


def _write(writer: align_cache.PackWriter, key: str, jpeg: bytes | None) -> None:
    writer.write(
        key, ok=jpeg is not None, reason=None if jpeg is not None else "no_face", detail="d",
        landmarks=ARCFACE_TEMPLATE_112, landmark_source="given", score=None, jpeg=jpeg,
    )  # fmt: skip


@pytest.mark.parametrize("ok", [True, False])
def test_every_torn_prefix_of_an_entry_or_its_index_line_reads_as_a_miss(tmp_path: Path, ok: bool) -> None:
    """No fsync: after a crash any prefix of the pack or of the index may be on disk, and none may be used."""
    keys = [align_cache.cache_key({"test": ok, "i": i}) for i in range(2)]
    jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes() if ok else None
    with align_cache.PackWriter(tmp_path) as writer:
        for key in keys:
            _write(writer, key, jpeg)
    pack, index, _, _, _ = _entry_location(tmp_path, keys[1])
    pack_bytes, index_bytes = pack.read_bytes(), index.read_bytes()
    assert all(align_cache.CacheIndex(tmp_path).read(k)["jpeg"] == jpeg for k in keys)
    first_entry = len(pack_bytes) // 2
    for length in reversed(range(first_entry, len(pack_bytes))):
        os.truncate(pack, length)
        cache = align_cache.CacheIndex(tmp_path)
        assert cache.read(keys[1]) is None, f"a {length}-byte prefix of {len(pack_bytes)} was accepted"
        assert cache.read(keys[0])["jpeg"] == jpeg, "an entry before the torn one is intact"
    pack.write_bytes(pack_bytes)
    for length in range(len(index_bytes)):
        index.write_bytes(index_bytes[:length])
        cache = align_cache.CacheIndex(tmp_path)
        assert cache.read(keys[1]) is None, f"a {length}-byte prefix of the index named the second entry"
        assert len(cache) == (length >= index_bytes.index(b"\n") + 1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_cache_key_refuses_non_finite_numbers_anywhere_and_ignores_key_order(bad: float) -> None:
    for payload in ({"a": bad}, {"a": None, "b": [1.0, (2.0, bad)]}, {"a": {"b": {"c": bad}}}):
        with pytest.raises(ValueError, match="finite"):
            align_cache.cache_key(payload)
    assert align_cache.cache_key({"a": None, "b": [0.1, 2]}) == align_cache.cache_key({"b": [0.1, 2], "a": None})
    assert align_cache.cache_key({"a": None}) != align_cache.cache_key({"a": 0})


def test_each_writer_appends_to_one_pack_and_index_and_the_newest_copy_wins(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    keys = [align_cache.cache_key({"i": i}) for i in range(40)]
    assert len(align_cache.CacheIndex(cache)) == 0, "a missing cache is an empty one"
    with align_cache.PackWriter(cache) as writer:
        for key in keys:
            _write(writer, key, None)
    files = sorted(p.relative_to(cache).parent.as_posix() + "/" + p.suffix for p in cache.rglob("*") if p.is_file())
    assert files == ["packs/.index", "packs/.pack"], "40 entries, two files"
    assert all(align_cache.CacheIndex(cache).read(k)["reason"] == "no_face" for k in keys)
    jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes()
    with align_cache.PackWriter(cache) as second:  # another process or run: its own pack
        _write(second, keys[0], jpeg)
    assert len(list((cache / align_cache.PACKS).iterdir())) == 4
    with align_cache.CacheIndex(cache) as index:
        assert len(index) == 40 and index.keys() == sorted(keys)
        assert index.read(keys[0])["jpeg"] == jpeg and index.read(keys[1])["jpeg"] is None
    with pytest.raises(ValueError, match="64 lowercase hex"):
        _write(align_cache.PackWriter(cache), "ab", None)


def test_an_index_over_more_packs_than_it_may_open_reads_them_all(tmp_path: Path) -> None:
    """A cache filled by many writers (a pack per Dask chunk): every entry reads back, few files stay open."""
    keys = [align_cache.cache_key({"pack": i}) for i in range(align_cache.MAX_OPEN_PACKS + 8)]
    for key in keys:
        with align_cache.PackWriter(tmp_path) as writer:
            _write(writer, key, None)
    opened = len(os.listdir("/proc/self/fd"))
    with align_cache.CacheIndex(tmp_path) as index:
        for _ in range(2):  # a second pass reopens the packs closed first
            assert all(index.read(key)["reason"] == "no_face" for key in keys)
            assert len(os.listdir("/proc/self/fd")) - opened <= align_cache.MAX_OPEN_PACKS
    assert len(os.listdir("/proc/self/fd")) == opened, "closing the index closes its packs"


def test_a_run_deletes_the_former_one_file_per_entry_layouts_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    for folder in ("ab", "a"):
        (cache / folder).mkdir(parents=True)
        (cache / folder / f"ab{'0' * 62}.entry").write_bytes(b"an entry of a former layout")
    (cache / "zz").mkdir()  # not hex digits: not ours to delete
    jobs = _write_photos(tmp_path, 2)
    first = _run(jobs, cache, detector="mtcnn", use_given_landmarks=True)
    assert sorted(p.name for p in cache.iterdir()) == [align_cache.PACKS, "zz"]
    assert len(align_cache.CacheIndex(cache)) == 2

    def unexpected(*args: object) -> None:
        raise AssertionError("a cached image was computed again")

    monkeypatch.setattr(runner_module, "_compute", unexpected)
    again = _run(jobs, cache, detector="mtcnn", use_given_landmarks=True)
    assert [r.jpeg for r in again] == [r.jpeg for r in first]


@pytest.mark.parametrize(
    ("faces", "options", "reason"),
    [
        pytest.param([], {}, "no_face", id="no_face"),
        pytest.param([_face(10, 1.0, 0.6)], {}, "low_score", id="low_score"),
        pytest.param([_face(10, 1.0, 0.99), _face(0, 0.5, 0.95)], {"multiple_faces": "quarantine"},
                     "multiple_faces", id="multiple_faces"),  # fmt: skip
        pytest.param([_face(10, 0.0, 0.99)], {}, "bad_landmarks", id="bad_landmarks"),
    ],
)
def test_runner_negative_results_are_cached(
    tmp_path: Path, fake: FakeDetector, faces: list[Face], options: dict, reason: str
) -> None:
    fake.faces = faces
    jobs = _write_photos(tmp_path, 1)
    (result,) = _run(jobs, tmp_path / "cache", **options)
    assert not result.ok and result.reason == reason and result.jpeg is None and result.detail
    (cached,) = _run(jobs, tmp_path / "cache", **options)
    assert fake.calls == 1 and cached.reason == reason and cached.detail == result.detail


def test_runner_keeps_largest_face(tmp_path: Path, fake: FakeDetector) -> None:
    fake.faces = [_face(0, 0.5, 0.95), _face(10, 1.0, 0.91)]
    (result,) = _run(_write_photos(tmp_path, 1), tmp_path / "cache")
    assert result.ok and result.score == pytest.approx(0.91)
    np.testing.assert_allclose(result.landmarks, ARCFACE_TEMPLATE_112 + 10)


def test_runner_parallel_matches_serial_and_keeps_order(tmp_path: Path) -> None:
    jobs = _write_photos(tmp_path, 6)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    digest = hashlib.sha256(b"not an image").hexdigest()
    jobs.insert(2, AlignJob("t_broken", "t", broken, digest, ARCFACE_TEMPLATE_112))
    jobs.insert(4, jobs[0])  # the same image twice
    options = dict(detector="mtcnn", use_given_landmarks=True)  # given landmarks everywhere: no detector needed
    serial = _run(jobs, tmp_path / "c1", **options)
    parallel = _run(jobs, tmp_path / "c2", workers=2, **options)
    assert [r.id for r in parallel] == [j.id for j in jobs]
    assert [r.jpeg for r in parallel] == [r.jpeg for r in serial]
    assert sum(r.ok for r in parallel) == 7
    assert parallel[2].reason == "decode_error" and "not_an_image" in parallel[2].detail
    assert parallel[4].jpeg == parallel[0].jpeg
    assert align_cache.CacheIndex(tmp_path / "c2").keys() == align_cache.CacheIndex(tmp_path / "c1").keys()
    assert len(list((tmp_path / "c2" / align_cache.PACKS).glob("*.pack"))) <= 2, "one pack per process at most"


def test_parallel_run_computes_here_from_the_back_while_the_worker_takes_the_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """workers=2: this process and one worker split the chunks; each image is computed exactly once."""
    jobs = _write_photos(tmp_path, 24)
    options = dict(detector="mtcnn", use_given_landmarks=True)  # given landmarks everywhere: no detector needed
    serial = _run(jobs, tmp_path / "c1", **options)
    here: list[str] = []
    compute = runner_module._compute

    def slow_here(job: AlignJob, settings: object) -> object:  # patched here only: the worker has its own module
        here.append(job.id)
        time.sleep(0.2)  # 4.8 s for all 24 here: the worker, started within a second, takes the front meanwhile
        return compute(job, settings)

    monkeypatch.setattr(runner_module, "_compute", slow_here)
    parallel = _run(jobs, tmp_path / "c2", workers=2, **options)
    assert [r.id for r in parallel] == [j.id for j in jobs]
    assert [r.jpeg for r in parallel] == [r.jpeg for r in serial]
    assert len(here) == len(set(here)), "no image computed twice here"
    ids = [j.id for j in jobs]
    assert sorted(here, key=ids.index) == ids[len(ids) - len(here) :], "this process takes chunks from the back"
    assert 0 < len(here) < len(ids), "both sides computed"
    assert len(align_cache.CacheIndex(tmp_path / "c2")) == len(jobs)


def test_detected_faces_are_the_same_bytes_whichever_process_computes_them(tmp_path: Path) -> None:
    """The real detector in this process (its threads pinned like a worker's) and in a worker agree."""
    jobs = []
    for i, photo in enumerate(generate_sample(3, 2, seed=3)):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(photo.jpeg)
        jobs.append(AlignJob(f"s{i}", "s", path, hashlib.sha256(photo.jpeg).hexdigest(), None))
    options = dict(detector="mtcnn", min_score=0.5)
    serial = _run(jobs, tmp_path / "c1", **options)
    parallel = _run(jobs, tmp_path / "c2", workers=2, **options)
    assert sum(r.ok for r in serial) >= len(jobs) // 2, "the sample's faces are found"
    assert [r.jpeg for r in parallel] == [r.jpeg for r in serial]
    assert all(r.landmark_source in (None, "detected") for r in parallel)


# ---------------------------------------------------------------- plain-JPEG decode path (faceops.io.images)


def _photo(seed: int = 0, height: int = 90, width: int = 120) -> np.ndarray:
    """[H, W, 3] uint8 smooth noise: compresses like a photo, so the JPEG has real entropy data."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _pillow_reference(data: bytes) -> np.ndarray | None:
    """What Pillow alone makes of ``data`` (full decode, EXIF transpose, RGB), or None if it refuses."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, SyntaxError, ValueError):
        return None


@pytest.fixture
def imdecode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts OpenCV decodes made by faceops.io.images (one per file that takes the fast path)."""
    calls: list[int] = []
    real = images_module.cv2.imdecode

    def counting(*args: object) -> np.ndarray | None:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(images_module.cv2, "imdecode", counting)
    return calls


def _pil_jpeg(pixels: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


PLAIN_JPEGS = {
    "q90_420": lambda p: _pil_jpeg(p, quality=90),
    "q95_444": lambda p: _pil_jpeg(p, quality=95, subsampling=0),
    "q60_422": lambda p: _pil_jpeg(p, quality=60, subsampling=1),
    "restart_markers": lambda p: cv2.imencode(".jpg", p, [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1].tobytes(),
    "comment_with_eoi": lambda p: _pil_jpeg(p, quality=90, comment=b"\xff\xd9 in a comment"),
    **{f"orientation_{o}": (lambda p, o=o: _pil_jpeg(p, quality=90, exif=_exif(o))) for o in range(1, 9)},
}


@pytest.mark.parametrize("variant", sorted(PLAIN_JPEGS))
def test_plain_jpeg_fast_path_gives_pillows_pixels(variant: str, imdecode_calls: list[int]) -> None:
    data = PLAIN_JPEGS[variant](_photo())
    out = decode_image(data, max_pixels=10**6)
    assert imdecode_calls == [1], "a plain JPEG must take the OpenCV path"
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, _pillow_reference(data))


def test_progressive_jpeg_takes_the_pillow_path(imdecode_calls: list[int]) -> None:
    data = _pil_jpeg(_photo(), quality=90, progressive=True)
    np.testing.assert_array_equal(decode_image(data, max_pixels=10**6), _pillow_reference(data))
    assert imdecode_calls == []


def _damaged_jpegs(data: bytes, rng: np.random.Generator) -> list[bytes]:
    """Truncated, holed, stray-marker and bit-flipped copies of ``data`` (damage after the scan header)."""
    scan = data.index(b"\xff\xda")
    cuts = [data[:-k] for k in (1, 2, 3, 50)] + [data[: int(rng.integers(scan, len(data)))] for _ in range(6)]
    holes = [data[:p] + data[p + 20 :] for p in rng.integers(scan + 20, len(data) - 40, 6)]
    markers = [data[:p] + bytes([0xFF, m]) + data[p + 2 :] for p in rng.integers(scan + 20, len(data) - 20, 6)
               for m in (0xC4, 0xDA, 0x55)]  # fmt: skip
    flips = [data[:p] + bytes([data[p] ^ 0x5A]) + data[p + 1 :] for p in rng.integers(scan + 20, len(data) - 2, 6)]
    return cuts + holes + markers + flips


@pytest.mark.parametrize("variant", ["q90_420", "restart_markers", "comment_with_eoi"])
def test_damaged_jpegs_get_pillows_verdict_and_pixels(variant: str) -> None:
    """A damaged file is rejected exactly when Pillow rejects it, and otherwise has Pillow's pixels."""
    rng = np.random.default_rng(7)
    for damaged in _damaged_jpegs(PLAIN_JPEGS[variant](_photo(1)), rng):
        reference = _pillow_reference(damaged)
        try:
            out = decode_image(damaged, max_pixels=10**6)
        except ImageRejected as err:
            assert reference is None, f"rejected ({err}) a file Pillow decodes"
            continue
        assert reference is not None, "accepted a file Pillow refuses"
        np.testing.assert_array_equal(out, reference)


# ---------------------------------------------------------------- the real MTCNN (the facenet extra)

MTCNN_GRID, MTCNN_CELL = 4, 220  # 16 generated photos (180-220 px) per canvas
MTCNN_CANVASES = range(6)  # seeds: ~60 faces found in both a canvas and its mirror image


def _face_canvas(seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Generated photos tiled on a grey canvas (one face each, many faces per image), and their true landmarks."""
    photos = generate_sample(MTCNN_GRID**2, 1, seed=seed, min_side=180, max_side=MTCNN_CELL, jpeg_quality=(90, 95))
    canvas = np.full((MTCNN_GRID * MTCNN_CELL, MTCNN_GRID * MTCNN_CELL, 3), 128, np.uint8)
    truth = []
    for k, photo in enumerate(photos):
        image = decode_image(photo.jpeg, max_pixels=10**6)
        y, x = (MTCNN_CELL * v for v in divmod(k, MTCNN_GRID))
        canvas[y : y + image.shape[0], x : x + image.shape[1]] = image
        truth.append(np.asarray(photo.labels["landmarks"]) + [x, y])
    return canvas, truth


@pytest.fixture(scope="module")
def mtcnn_runs() -> list[tuple[np.ndarray, list[np.ndarray], list[Face], list[Face]]]:
    """(canvas, true landmarks, faces found in it, faces found in its mirror image) per canvas."""
    pytest.importorskip("facenet_pytorch")
    runs = []
    for seed in MTCNN_CANVASES:
        canvas, truth = _face_canvas(seed)
        faces = detect_faces(canvas, detector="mtcnn", min_score=0.9)
        mirrored = detect_faces(np.ascontiguousarray(canvas[:, ::-1]), detector="mtcnn", min_score=0.9)
        runs.append((canvas, truth, faces, mirrored))
    return runs


def test_mtcnn_finds_generated_faces_in_image_coordinates(mtcnn_runs) -> None:
    for _, truth, faces, _ in mtcnn_runs:
        assert len(faces) >= 2
        areas = [f.area for f in faces]
        assert areas == sorted(areas, reverse=True)
        for face in faces:
            left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
            assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0], "image-left point first"
            assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
            x1, y1, x2, y2 = face.box
            assert (face.landmarks[:, 0] > x1).all() and (face.landmarks[:, 0] < x2).all()
            assert (face.landmarks[:, 1] > y1).all() and (face.landmarks[:, 1] < y2).all()
            # the points of one generated face (same order), within 15% of the box width on average
            error = min(np.linalg.norm(face.landmarks - points, axis=1).mean() for points in truth)
            assert error < 0.15 * (x2 - x1), f"{error:.1f} px from the nearest generated face"


def test_mtcnn_coordinates_are_zero_based(mtcnn_runs) -> None:
    """Mirror test: in 0-based pixel coordinates x_pred(image) + x_pred(mirrored image) = W - 1 on average.

    facenet-pytorch reports 1-based coordinates; uncorrected, this offset would be +1 px. MTCNN is not
    exactly mirror-symmetric (about 0.5 px spread per face), hence the mean over many faces.
    """
    offsets = []
    for canvas, _, faces, mirrored in mtcnn_runs:
        width = canvas.shape[1]
        for face in faces:
            for other in mirrored:
                back = other.landmarks[[1, 0, 2, 4, 3]]  # left/right swap places in a mirror
                if np.abs((width - 1 - back[:, 0]) - face.landmarks[:, 0]).max() < 6:
                    offsets.append((face.landmarks[:, 0] + back[:, 0] - (width - 1)) / 2)
    assert len(offsets) >= 40
    assert abs(np.mean(offsets)) < 0.3, f"mean x offset {np.mean(offsets):.2f} px"


# ---- loose crops for the keypoint networks ---------------------------------------------------------


def test_crop_roundtrip_is_exact_and_centres_the_points():
    from faceops.align.crop import crop_matrix, from_crop, to_crop, warp_crop

    points = np.array([[40.0, 50.0], [80.0, 52.0], [60.0, 70.0], [45.0, 90.0], [78.0, 88.0]])
    m = crop_matrix(points, 64)
    inside = to_crop(points, m)
    assert np.allclose(inside.mean(axis=0), [32.0, 32.0])  # centroid lands in the crop centre
    assert np.allclose(from_crop(inside, m), points)
    shifted = crop_matrix(points, 64, shift=(0.1, 0.0), zoom=2.0)
    assert np.allclose(from_crop(to_crop(points, shifted), shifted), points)
    assert to_crop(points, shifted)[:, 0].mean() < 32.0  # window moved right -> points move left
    image = np.zeros((120, 120, 3), np.uint8)
    image[70, 60] = 255  # a bright pixel on the third point
    crop = warp_crop(image, crop_matrix(points, 64, spread=1.0 * 3.5), 64)
    peak = np.unravel_index(crop[..., 0].argmax(), crop.shape[:2])
    expected = to_crop(points[2], crop_matrix(points, 64))
    assert abs(peak[1] - expected[0]) <= 1 and abs(peak[0] - expected[1]) <= 1


def test_crop_refuses_degenerate_points():
    from faceops.align.crop import crop_matrix

    with pytest.raises(ValueError, match="identical"):
        crop_matrix(np.ones((5, 2)), 64)
    with pytest.raises(ValueError, match="J >= 2"):
        crop_matrix(np.ones((1, 2)), 64)
