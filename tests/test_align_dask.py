"""Tests of align's Dask runner (``runner="dask"``, faceops.dask_runner): the same results as the in-process
runner, byte for byte and in order, on a temporary local cluster and on a running one reached by address;
the setup errors that must come before any work.

Everything stays on 127.0.0.1: Dask clusters that every test closes; no process a test started may outlive it.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from faceops.align import AlignJob, AlignResult, DetectorSpec, Face, align_many
from faceops.align import detector as detector_module
from faceops.config.align import AlignParams
from faceops.io import align_cache
from faceops.labels import ARCFACE_TEMPLATE_112
from faceops.dask_runner import _chunk_size, check_dask_address, dask_map

needs_dask = pytest.mark.skipif(find_spec("distributed") is None, reason="the dask extra is not installed")


# ---------------------------------------------------------------- a detector the Dask workers can rebuild


class DarkMeansNoFace:
    """Finds one face at a fixed place, except in dark images (no face). Module level: the workers
    receive it by reference inside the run's settings and build it themselves."""

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        if image_rgb.mean() < 40:
            return []
        landmarks = ARCFACE_TEMPLATE_112 * 1.2 + 20
        return [Face(box=np.array([20.0, 20.0, 154.4, 154.4]), landmarks=landmarks, score=0.97)]


def _fake_version() -> str:
    return "dark-means-no-face-1"


@pytest.fixture
def fake_detector(monkeypatch: pytest.MonkeyPatch) -> str:
    spec = DetectorSpec(name="dark_fake", factory=DarkMeansNoFace, version=_fake_version)
    monkeypatch.setitem(detector_module._REGISTRY, spec.name, spec)
    return spec.name


def _job(folder: Path, name: str, pixels: np.ndarray | None, landmarks: np.ndarray | None) -> AlignJob:
    path = folder / f"{name}.jpg"
    if pixels is None:
        path.write_bytes(b"this is not a JPEG")
    else:
        cv2.imwrite(str(path), pixels, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return AlignJob(f"t_{name}", "t", path, hashlib.sha256(path.read_bytes()).hexdigest(), landmarks)


def _photos(folder: Path, count: int, seed: int) -> list[AlignJob]:
    """Smooth-noise photos (200 x 180) with given landmarks, each somewhere else."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(count):
        pixels = cv2.GaussianBlur(rng.integers(40, 256, size=(180, 200, 3), dtype=np.uint8), (7, 7), 0)
        landmarks = ARCFACE_TEMPLATE_112 * rng.uniform(0.8, 1.3) + rng.uniform(5, 30)
        jobs.append(_job(folder, f"s{seed}_{i}", pixels, landmarks))
    return jobs


def _mixed_jobs(folder: Path) -> list[AlignJob]:
    """Given landmarks, detected ones, a photo without a face, a corrupt file and one photo twice."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    jobs = _photos(folder, 10, seed=1)
    bright = cv2.GaussianBlur(rng.integers(60, 256, size=(190, 190, 3), dtype=np.uint8), (5, 5), 0)
    jobs.insert(3, _job(folder, "detected", bright, None))
    jobs.insert(5, _job(folder, "dark", np.full((190, 190, 3), 12, np.uint8), None))
    jobs.insert(7, _job(folder, "corrupt", None, ARCFACE_TEMPLATE_112))
    jobs.insert(9, jobs[0])  # the same photo twice: computed once, reported twice
    return jobs


def _align(jobs: list[AlignJob], cache: Path, detector: str, **options: object) -> list[AlignResult]:
    return align_many(jobs, cache_dir=cache, detector=detector, min_score=0.9, jpeg_quality=90, **options)


def _assert_same(actual: list[AlignResult], expected: list[AlignResult]) -> None:
    assert [r.id for r in actual] == [r.id for r in expected]
    for a, e in zip(actual, expected, strict=True):
        assert (a.ok, a.reason, a.detail, a.landmark_source, a.score, a.jpeg) == (
            e.ok, e.reason, e.detail, e.landmark_source, e.score, e.jpeg
        ), a.id  # fmt: skip
        if e.landmarks is None:
            assert a.landmarks is None
        else:
            np.testing.assert_array_equal(a.landmarks, e.landmarks)


def _entries(cache: Path) -> dict[str, dict]:
    """Every cached result by key (packs differ in order and names between runners; the results may not)."""
    with align_cache.CacheIndex(cache) as index:
        return {key: _comparable(index.read(key)) for key in index.keys()}


def _comparable(entry: dict) -> dict:
    return {**entry, "landmarks": None if entry["landmarks"] is None else entry["landmarks"].tolist()}


# ---------------------------------------------------------------- fixtures: a running cluster


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _assert_all_gone(before: set[int]) -> None:
    """Fails if a process started since ``before`` (Dask scheduler, nanny, worker) is still alive after 15 s.

    multiprocessing's helpers (resource tracker, forkserver) are left out: one per process by design,
    started on first use and gone when this process exits.
    """
    deadline = time.monotonic() + 15
    while True:
        left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
                and not any("resource_tracker" in part or "forkserver" in part for part in p.cmdline())]  # fmt: skip
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, f"processes left running: {[(p.pid, p.cmdline()) for p in left]}"


@pytest.fixture
def no_leaked_processes() -> Iterator[None]:
    before = _children()
    yield
    _assert_all_gone(before)


@pytest.fixture(scope="module")
def running_cluster() -> Iterator[str]:
    """A Dask cluster that outlives align calls, as ``dask scheduler`` + ``dask worker`` would; its address."""
    from distributed import LocalCluster

    before = _children()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address
    _assert_all_gone(before)


# ---------------------------------------------------------------- runs on Dask


@needs_dask
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_local_cluster_gives_the_in_process_results(
    tmp_path: Path, fake_detector: str, no_leaked_processes: None
) -> None:
    jobs = _mixed_jobs(tmp_path / "photos")
    expected = _align(jobs, tmp_path / "serial", fake_detector, workers=1)
    assert [r.reason for r in expected].count(None) == len(jobs) - 2
    assert {r.reason for r in expected} == {None, "no_face", "decode_error"}
    assert expected[3].landmark_source == "detected" and expected[5].reason == "no_face"

    seen: list[int] = []
    on_dask = _align(jobs, tmp_path / "dask", fake_detector, workers=2, runner="dask", progress=seen.append)
    _assert_same(on_dask, expected)
    assert sum(seen) == len(jobs)
    assert _entries(tmp_path / "dask") == _entries(tmp_path / "serial"), "the workers wrote the same cache entries"

    again = _align(jobs, tmp_path / "dask", fake_detector, workers=2, runner="dask")  # all cached: no cluster
    _assert_same(again, expected)


@needs_dask
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_running_cluster_computes_only_what_is_new(
    tmp_path: Path, fake_detector: str, running_cluster: str
) -> None:
    first, new = _mixed_jobs(tmp_path / "photos"), _photos(tmp_path / "photos", 5, seed=2)
    expected = _align(first + new, tmp_path / "serial", fake_detector, workers=1)

    _align(first, tmp_path / "dask", fake_detector, runner="dask", dask_address=running_cluster)
    before = _entries(tmp_path / "dask")
    both = _align(first + new, tmp_path / "dask", fake_detector, runner="dask", dask_address=running_cluster)
    _assert_same(both, expected)
    after = _entries(tmp_path / "dask")
    assert after == _entries(tmp_path / "serial")
    assert len(after) == len(before) + len(new) and all(after[name] == data for name, data in before.items())


def _double_or_fail(chunk: list[int]) -> list[int]:
    if 13 in chunk:
        raise ArithmeticError("13 is not welcome")
    return [2 * x for x in chunk]


@needs_dask
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_dask_map_keeps_order_and_raises_what_a_worker_raised(running_cluster: str) -> None:
    doubled = dask_map(_double_or_fail, range(12), max_chunk=2, address=running_cluster)
    assert list(doubled) == [2 * x for x in range(12)]
    assert list(dask_map(_double_or_fail, [], max_chunk=2, address=running_cluster)) == []
    with pytest.raises(ArithmeticError, match="13 is not welcome"):
        list(dask_map(_double_or_fail, range(20), max_chunk=3, address=running_cluster))


# ---------------------------------------------------------------- errors before any work


@pytest.mark.parametrize(
    "address", ["http://sched:8786", "tcp://sched", "tcp://:8786", "tcp://sched:8786/x", "tcp://u@sched:1", "sched:8786"]
)
def test_malformed_address_fails_before_any_work(tmp_path: Path, address: str) -> None:
    jobs = _photos(tmp_path, 1, seed=0)
    with pytest.raises(ValueError, match=r"tcp://host:8786 or tls://host:8786"):
        _align(jobs, tmp_path / "cache", "mtcnn", runner="dask", dask_address=address)
    with pytest.raises(ValueError, match="Dask scheduler address"):
        AlignParams(runner="dask", dask_address=address)
    assert not (tmp_path / "cache").exists()


def test_address_without_the_dask_runner_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only used with runner='dask'"):
        _align(_photos(tmp_path, 1, seed=0), tmp_path / "cache", "mtcnn", dask_address="tcp://sched:8786")
    with pytest.raises(ValueError, match="only used with runner: dask"):
        AlignParams(dask_address="tcp://sched:8786")
    assert AlignParams(runner="dask", dask_address="tls://10.0.0.5:8786").dask_address == "tls://10.0.0.5:8786"
    assert AlignParams().runner == "processes" and AlignParams().dask_address is None
    assert not (tmp_path / "cache").exists()


def test_missing_extra_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    jobs = _photos(tmp_path, 2, seed=0)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[dask\]'"):
        _align(jobs, tmp_path / "cache", "mtcnn", runner="dask")
    with pytest.raises(ImportError, match="the `dask` extra"):
        dask_map(_double_or_fail, [], max_chunk=1)
    assert not (tmp_path / "cache").exists()
    assert [r.ok for r in _align(jobs, tmp_path / "cache", "mtcnn")] == [True, True], "processes need no extra"


def test_chunks_follow_the_worker_threads_up_to_the_cap() -> None:
    assert _chunk_size(1000, slots=2, max_chunk=256) == 125  # 4 chunks per worker thread
    assert _chunk_size(10_000, slots=2, max_chunk=256) == 256
    assert _chunk_size(3, slots=8, max_chunk=256) == 1
    assert _chunk_size(5, slots=0, max_chunk=256) == 2  # no worker connected yet: as for one
    assert check_dask_address("tcp://[::1]:8786") == "tcp://[::1]:8786"
