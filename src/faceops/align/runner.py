"""Align many images with a per-image cache and optional worker processes (library of the ``align`` stage).

Each image goes: cache lookup -> read -> landmarks (given, or detected) -> warp -> JPEG -> cache write.
The cache key (``faceops.io.align_cache``) is the image's content hash plus everything that changes the
result, so a re-run, or a run with a few new photos, computes only what is new. Failures that belong
to the image (no face, low score, several faces, degenerate landmarks) are results and are cached;
unreadable files (``decode_error``) are results but are not cached, since a file can be fixed in place.
Bugs (an exception anywhere else) stop the run with the image id attached.

Who computes the pending images (``runner``) never changes a result's bytes: ``"processes"`` uses
``workers`` processes on this machine (``faceops.processes``); ``"dask"`` sends chunks of images to a Dask
cluster (``faceops.dask_runner``), so several machines that share the filesystem can split one run.
Either way the worker that computes an image writes its cache entry, into a pack file of its own.

``max_pixels`` is not part of the key: it only decides whether an image is read at all (ingest applies
the same limit first), and a rejected image is never cached. Entries are appended to packs and check
themselves when read (``faceops.io.align_cache``), so a killed run leaves at worst a torn entry: a miss.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from faceops.align.detector import (
    DetectorSpec,
    detect_faces,
    detector_spec,
    get_detector,
    list_detectors,
    register_detector,
)
from faceops.align.similarity import DegenerateLandmarksError
from faceops.align.warp import align_face
from faceops.io import align_cache
from faceops.io.images import ImageRejected, read_image
from faceops.processes import forkserver_context
from faceops.runtime import decisive_versions

__all__ = ["ALIGN_CODE_VERSION", "AlignJob", "AlignResult", "align_many"]

#: Bump when the code changes the bytes or the verdict for the same inputs (invalidates the cache).
ALIGN_CODE_VERSION = 1
#: What decides an aligned face's bytes besides the code: OpenCV (decode, warp, encode), its libjpeg-turbo,
#: numpy (the similarity), Pillow (other formats' decode); torch only for detected landmarks (detector_version).
_DECISIVE_LIBRARIES = ("opencv", "libjpeg_turbo", "numpy", "pillow")

MultipleFaces = Literal["largest", "quarantine"]
LandmarkSource = Literal["given", "detected"]
Runner = Literal["processes", "dask"]
_MULTIPLE_FACES = ("largest", "quarantine")
_RUNNERS = ("processes", "dask")


@dataclass(frozen=True, eq=False)
class AlignJob:
    """One image to align.

    Attributes:
        id: sample id (``faceops.labels.sample_id``).
        source: source name.
        image_path: the image file.
        sha256: hex sha256 of the file's bytes (from the ingest manifest); the cache trusts it.
        given_landmarks: [5, 2] (x, y) in displayed-image pixels, or None.
    """

    id: str
    source: str
    image_path: Path
    sha256: str
    given_landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.given_landmarks is not None:
            points = np.array(self.given_landmarks, dtype=np.float64)
            if points.shape != (5, 2) or not np.isfinite(points).all():
                raise ValueError(
                    f"job {self.id!r}: given_landmarks must be [5, 2] finite (x, y) or None, "
                    f"got shape {points.shape}"
                )
            points.setflags(write=False)
            object.__setattr__(self, "given_landmarks", points)
        object.__setattr__(self, "image_path", Path(self.image_path))


@dataclass(frozen=True, eq=False)
class AlignResult:
    """What became of one job.

    Attributes:
        id: the job's id.
        ok: True when ``jpeg`` holds an aligned face.
        reason: failure code when not ok: ``no_face``, ``low_score``, ``multiple_faces``,
            ``bad_landmarks`` or ``decode_error``.
        detail: sentence for humans, or None.
        landmarks: [5, 2] (x, y) used for the warp, in source-image pixels, or None.
        landmark_source: ``"given"``, ``"detected"`` or None.
        score: detector score of the face used (None for given landmarks).
        jpeg: the aligned face as JPEG bytes, or None.
    """

    id: str
    ok: bool
    reason: str | None
    detail: str | None
    landmarks: np.ndarray | None
    landmark_source: LandmarkSource | None
    score: float | None
    jpeg: bytes | None


@dataclass(frozen=True)
class _Settings:
    """Everything a worker needs besides the job (picklable)."""

    cache_dir: Path
    size: int
    detector: DetectorSpec
    min_score: float
    multiple_faces: MultipleFaces
    use_given_landmarks: bool
    jpeg_quality: int
    max_pixels: int
    #: Versions of the libraries that make a result's bytes (decoder, encoder, numpy): part of every key,
    #: so an upgrade recomputes instead of serving faces the old libraries made.
    libraries: tuple[tuple[str, str], ...] = ()

    def uses_given(self, job: AlignJob) -> bool:
        return self.use_given_landmarks and job.given_landmarks is not None


def _job_cache_key(job: AlignJob, settings: _Settings, detector_version: str | None) -> str:
    """Cache key of ``job``: content hash + the settings that can change its result.

    With given landmarks the detector settings cannot change the output, so they stay out of the key
    (changing ``min_score`` does not recompute those images); without, the given landmarks stay out.
    """
    payload: dict[str, Any] = {
        "code": ALIGN_CODE_VERSION,
        "libraries": settings.libraries,
        "image_sha256": job.sha256,
        "size": settings.size,
        "jpeg_quality": settings.jpeg_quality,
    }
    if settings.uses_given(job):
        payload["landmarks"] = {"source": "given", "points": job.given_landmarks.tolist()}
    else:
        payload["landmarks"] = {
            "source": "detected",
            "detector": settings.detector.name,
            "detector_version": detector_version,
            "min_score": settings.min_score,
            "multiple_faces": settings.multiple_faces,
        }
    return align_cache.cache_key(payload)


def _failure(job: AlignJob, reason: str, detail: str, score: float | None = None) -> AlignResult:
    return AlignResult(job.id, False, reason, detail, None, None, score, None)


def _choose_landmarks(
    job: AlignJob, image: np.ndarray, settings: _Settings
) -> tuple[np.ndarray, LandmarkSource, float | None] | AlignResult:
    """(landmarks, source, score) for ``job``, or a failed result saying why there are none."""
    if settings.uses_given(job):
        return job.given_landmarks, "given", None
    faces = detect_faces(image, detector=settings.detector.name)
    if not faces:
        return _failure(job, "no_face", f"detector {settings.detector.name!r} found no face")
    kept = [f for f in faces if f.score >= settings.min_score]
    if not kept:
        best = max(f.score for f in faces)
        return _failure(
            job, "low_score", f"best face score {best:.4f} is below min_score={settings.min_score}", best
        )
    if len(kept) > 1 and settings.multiple_faces == "quarantine":
        return _failure(
            job,
            "multiple_faces",
            f"{len(kept)} faces score >= min_score={settings.min_score} and multiple_faces='quarantine'; "
            "set multiple_faces: largest to keep the largest",
        )
    face = kept[0]  # detect_faces sorts by box area, largest first
    return face.landmarks, "detected", face.score


def _encode_jpeg(face_rgb: np.ndarray, quality: int) -> bytes:
    bgr = cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"cv2.imencode failed on a {face_rgb.shape} crop at quality {quality}")
    return buffer.tobytes()


def _compute(job: AlignJob, settings: _Settings) -> AlignResult:
    """Align one image (no cache lookup); never raises for a problem of the image itself."""
    try:
        image = read_image(job.image_path, max_pixels=settings.max_pixels)
    except ImageRejected as err:
        return _failure(job, "decode_error", f"{err.reason}: {err.detail}")
    except OSError as err:
        return _failure(job, "decode_error", f"cannot read {job.image_path}: {err}")
    chosen = _choose_landmarks(job, image, settings)
    if isinstance(chosen, AlignResult):
        return chosen
    landmarks, source, score = chosen
    try:
        face = align_face(image, landmarks, settings.size)
    except DegenerateLandmarksError as err:
        return AlignResult(job.id, False, "bad_landmarks", str(err), landmarks, source, score, None)
    return AlignResult(job.id, True, None, None, landmarks, source, score, _encode_jpeg(face, settings.jpeg_quality))


def _compute_and_store(job: AlignJob, key: str, settings: _Settings, cache: align_cache.PackWriter) -> AlignResult:
    """``_compute`` plus the cache write; bugs are re-raised with the job attached."""
    try:
        result = _compute(job, settings)
    except Exception as err:
        raise RuntimeError(f"aligning {job.id!r} ({job.image_path}) failed: {type(err).__name__}: {err}") from err
    if result.reason != "decode_error":
        cache.write(
            key,
            ok=result.ok,
            reason=result.reason,
            detail=result.detail,
            landmarks=result.landmarks,
            landmark_source=result.landmark_source,
            score=result.score,
            jpeg=result.jpeg,
        )
    return result


# The settings of the pool this worker process belongs to (set once by ``_init_worker``).
_WORKER_SETTINGS: _Settings | None = None
# This worker process's pack of the cache (``_init_worker``); the process's exit closes its files.
_WORKER_CACHE: align_cache.PackWriter | None = None
# The pool's claim flags, one per chunk, shared with the process that started it (``_run_with_helpers``).
_WORKER_CLAIMS: Any = None


def _prepare_process(spec: DetectorSpec, build_detector: bool) -> None:
    """Per-process setup: one thread per library (processes give the parallelism), the detector built once.

    Idempotent, so a Dask worker can run it before every chunk: the spec is registered only when the
    registry lacks it (registering drops a built detector), and the detector is built only once.
    """
    cv2.setNumThreads(1)
    if spec.name not in list_detectors() or detector_spec(spec.name) != spec:
        register_detector(spec)
    if build_detector:
        get_detector(spec.name)
        torch = sys.modules.get("torch")  # imported by a torch backend while building, never here
        if torch is not None:
            torch.set_num_threads(1)


def _init_worker(settings: _Settings, build_detector: bool, claims: Any) -> None:
    """Pool initializer: the settings and the claim flags arrive once per process rather than with every task."""
    global _WORKER_SETTINGS, _WORKER_CLAIMS, _WORKER_CACHE
    _WORKER_SETTINGS, _WORKER_CLAIMS = settings, claims
    _WORKER_CACHE = align_cache.PackWriter(settings.cache_dir)
    _prepare_process(settings.detector, build_detector)


def _claim(claims: Any, index: int) -> bool:
    """Take chunk ``index`` for the calling process; False when another process took it first."""
    with claims.get_lock():
        if claims[index]:
            return False
        claims[index] = 1
        return True


def _worker_chunk(index: int, chunk: list[tuple[AlignJob, str]]) -> list[AlignResult] | None:
    """The chunk's results, or None when the process that started the pool computed it."""
    assert _WORKER_SETTINGS is not None and _WORKER_CACHE is not None, "_init_worker must run first"
    if not _claim(_WORKER_CLAIMS, index):
        return None
    return [_compute_and_store(job, key, _WORKER_SETTINGS, _WORKER_CACHE) for job, key in chunk]


def _dask_chunk(settings: _Settings, build_detector: bool, tasks: list[tuple[AlignJob, str]]) -> list[AlignResult]:
    """One Dask task: a chunk of pending images.

    The settings travel with every chunk, not once per process as in the pool: a long-lived cluster's
    worker may serve other runs, with other settings, between two chunks of this one; so each chunk writes
    a pack of its own (up to 256 entries) and closes it.
    """
    _prepare_process(settings.detector, build_detector)
    with align_cache.PackWriter(settings.cache_dir) as cache:
        return [_compute_and_store(job, key, settings, cache) for job, key in tasks]


def _run_on_dask(
    tasks: list[tuple[AlignJob, str]], settings: _Settings, workers: int, dask_address: str | None
) -> Iterator[AlignResult]:
    """Results of ``tasks`` in order, computed by a Dask cluster (``faceops.dask_runner.dask_map``).

    Chunks of at most 256 images: a chunk then spends its time aligning rather than travelling, and a
    worker still reports back every second or two.
    """
    from faceops.dask_runner import dask_map

    build_detector = any(not settings.uses_given(job) for job, _ in tasks)
    compute = functools.partial(_dask_chunk, settings, build_detector)
    yield from dask_map(compute, tasks, max_chunk=256, workers=workers, address=dask_address)


def _run_pending(
    tasks: list[tuple[AlignJob, str]], settings: _Settings, workers: int, runner: Runner, dask_address: str | None,
    cache: align_cache.PackWriter,
) -> Iterator[AlignResult]:  # fmt: skip
    """Results of ``tasks`` in order: on Dask, in this process, or in ``workers`` worker processes
    (``cache``: this process's pack)."""
    if runner == "dask":
        yield from _run_on_dask(tasks, settings, workers, dask_address)
        return
    if workers == 1 or len(tasks) <= 1:
        for job, key in tasks:
            yield _compute_and_store(job, key, settings, cache)
        return
    yield from _run_with_helpers(tasks, settings, min(workers, len(tasks)), cache)


@contextlib.contextmanager
def _like_a_worker(settings: _Settings, build_detector: bool) -> Iterator[None]:
    """Compute in this process with the workers' set-up: one OpenCV and one torch thread, the detector built.

    A detector's convolutions may sum in another order with another thread count, so an image's landmarks,
    hence its bytes, must not depend on which process computed it. The caller's thread counts come back
    afterwards (a torch first imported here, by building the detector, keeps one thread).
    """
    cv2_threads = cv2.getNumThreads()
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    _prepare_process(settings.detector, build_detector)  # one torch thread too, whenever it builds the detector
    try:
        yield
    finally:
        cv2.setNumThreads(cv2_threads)
        if torch is not None and torch_threads is not None:
            torch.set_num_threads(torch_threads)


def _run_with_helpers(
    tasks: list[tuple[AlignJob, str]], settings: _Settings, workers: int, cache: align_cache.PackWriter
) -> Iterator[AlignResult]:
    """Results of ``tasks`` in order, computed by this process and ``workers - 1`` worker processes.

    This process computes too, from the back of the list while the pool starts at the front: starting the
    pool (the forkserver and its preloads) takes ~0.2 s, a fifth of a 1000-photo run on 2 cores, and the
    helpers would otherwise leave this process idle meanwhile (``bench/align.py``); so a thread submits the
    chunks (the first submit waits for the forkserver) while this one computes. Every chunk goes to the
    pool, and whoever claims it first (a flag per chunk in shared memory) computes it, so every chunk is
    computed exactly once; the two sides meet in the middle. (Not by cancelling futures: a pool that breaks
    with cancelled futures pending kills its own management thread on Python 3.11.) Same bytes whoever
    computes an image.
    """
    # Chunks of up to 16 images (tens of ms of work) keep the per-task IPC small; at least 4 chunks
    # per process keep the last chunks from leaving a process idle for long.
    size = max(1, min(16, len(tasks) // (workers * 4)))
    chunks = [tasks[start : start + size] for start in range(0, len(tasks), size)]
    build_detector = any(not settings.uses_given(job) for job, _ in tasks)
    # A forkserver with this module preloaded: workers start in milliseconds with numpy and OpenCV loaded,
    # and import torch only when they build a detector.
    context = forkserver_context([__name__])
    claims = context.Array("b", len(chunks))
    with ProcessPoolExecutor(
        max_workers=workers - 1, mp_context=context, initializer=_init_worker,
        initargs=(settings, build_detector, claims),
    ) as pool, ThreadPoolExecutor(1, thread_name_prefix="align-submit") as submitter:  # fmt: skip
        # Submitting starts the pool (the first submit waits for the forkserver's preloads): in a thread.
        submitted = submitter.submit(lambda: [pool.submit(_worker_chunk, i, chunk) for i, chunk in enumerate(chunks)])
        computed_here: dict[int, list[AlignResult]] = {}
        with _like_a_worker(settings, build_detector):
            for index in reversed(range(len(chunks))):
                if not _claim(claims, index):  # a worker has it, and every chunk before it was handed out earlier
                    break
                computed_here[index] = [_compute_and_store(job, key, settings, cache) for job, key in chunks[index]]
        for index, future in enumerate(submitted.result()):
            yield from computed_here[index] if index in computed_here else future.result()


def _check_options(
    size: int, min_score: float, multiple_faces: str, jpeg_quality: int, max_pixels: int, workers: int,
    runner: str, dask_address: str | None,
) -> None:  # fmt: skip
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be in [0, 1], got {min_score}")
    if multiple_faces not in _MULTIPLE_FACES:
        raise ValueError(f"multiple_faces must be one of {_MULTIPLE_FACES}, got {multiple_faces!r}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if runner not in _RUNNERS:
        raise ValueError(f"runner must be one of {_RUNNERS}, got {runner!r}")
    if dask_address is not None and runner != "dask":
        raise ValueError(f"dask_address is only used with runner='dask', got runner={runner!r}")
    if runner == "dask":
        from faceops.dask_runner import check_dask_setup

        check_dask_setup(dask_address)


def align_many(
    jobs: Sequence[AlignJob],
    *,
    cache_dir: Path,
    size: int = 112,
    detector: str = "mtcnn",
    min_score: float = 0.9,
    multiple_faces: MultipleFaces = "largest",
    use_given_landmarks: bool = True,
    jpeg_quality: int = 95,
    max_pixels: int = 40_000_000,
    workers: int = 1,
    runner: Runner = "processes",
    dask_address: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[AlignResult]:
    """Align every job, reusing cached results; one result per job, in job order.

    Args:
        jobs: images to align.
        cache_dir: root of the per-image cache (created if missing).
        size: side of the aligned crop in pixels.
        detector: registered detector name, used for jobs without (or ignoring) given landmarks.
        min_score: faces scoring below are ignored; an image with only such faces is ``low_score``.
        multiple_faces: ``"largest"`` keeps the largest face; ``"quarantine"`` fails the image
            (``multiple_faces``) when more than one face passes ``min_score``.
        use_given_landmarks: use a job's given landmarks instead of detecting.
        jpeg_quality: JPEG quality of the aligned crops (1-100).
        max_pixels: images larger than this are ``decode_error`` (decompression bombs).
        workers: processes that compute: this one and ``workers - 1`` worker processes, which use one
            thread each and are forked from a ``forkserver`` (started once per process, with this module
            preloaded); 1 runs in this process alone. With
            ``runner="dask"`` and no ``dask_address``: the processes of a temporary local Dask cluster.
        runner: ``"processes"`` (above) or ``"dask"``: chunks of pending images go to a Dask cluster
            (``faceops.dask_runner``; needs the ``dask`` extra). Same results.
        dask_address: with ``runner="dask"``, a running scheduler (``tcp://host:port``) whose workers
            see the images and ``cache_dir`` under the same paths; None starts a local cluster.
        progress: called with the number of jobs finished since its previous call (cache hits included),
            e.g. ``tqdm.update``.

    Returns:
        One ``AlignResult`` per job, same order as ``jobs``.

    Raises:
        ValueError: an invalid option or unknown detector; with ``runner="dask"``, a malformed
            ``dask_address`` (before any work).
        ImportError: a job needs the detector and its backend package is missing; ``runner="dask"``
            without dask.distributed installed (before any work).
        RuntimeError: an unexpected error while aligning an image (the message names the job).
    """
    _check_options(size, min_score, multiple_faces, jpeg_quality, max_pixels, workers, runner, dask_address)
    versions = decisive_versions()
    settings = _Settings(
        Path(cache_dir), size, detector_spec(detector), min_score, multiple_faces, use_given_landmarks,
        jpeg_quality, max_pixels, tuple((k, versions[k]) for k in _DECISIVE_LIBRARIES),
    )  # fmt: skip
    align_cache.remove_superseded(settings.cache_dir)
    needs_detector = any(not settings.uses_given(job) for job in jobs)
    detector_version = settings.detector.version() if needs_detector else None

    results: list[AlignResult | None] = [None] * len(jobs)
    pending: dict[str, list[int]] = {}  # key -> job indices; identical images are computed once
    with align_cache.CacheIndex(settings.cache_dir) as index_of_cache:
        for index, job in enumerate(jobs):
            key = _job_cache_key(job, settings, detector_version)
            cached = None if key in pending else index_of_cache.read(key)
            if cached is None:
                pending.setdefault(key, []).append(index)
            else:
                results[index] = AlignResult(id=job.id, **cached)
    if progress is not None and len(jobs) > sum(map(len, pending.values())):
        progress(len(jobs) - sum(map(len, pending.values())))

    tasks = [(jobs[indices[0]], key) for key, indices in pending.items()]
    with align_cache.PackWriter(settings.cache_dir) as cache:
        computed = _run_pending(tasks, settings, workers, runner, dask_address, cache)
        for (key, indices), result in zip(pending.items(), computed, strict=True):
            for index in indices:
                results[index] = result if result.id == jobs[index].id else replace(result, id=jobs[index].id)
            if progress is not None:
                progress(len(indices))
    assert all(r is not None for r in results), "every job must have a result"
    return results  # type: ignore[return-value]
