"""SSPCM pseudo-keypoints for the manifest rows of the ``keypoints`` stage: crops, training, scores, rows.

Two tasks, each with its own model because the points differ (never mixed in one network): faces
(5 landmarks) and bodies (the J joints of ``coco_keypoints`` sources, whose rows carry ``persons``).
Points given by a source train the heatmap networks, minus a held-out share (by image id hash) whose
points are hidden and scored; the rest get predictions.

* Faces: crops around the given landmarks; faces without any are located by the detector.
  Scored by NME and PCK@0.1 of the inter-ocular distance (``heldout/...``).
* Bodies: a square of 1.25x the longer side of each annotated person box. Persons with a visible
  joint are labelled (invisible joints masked), persons without one are unlabeled targets.
  Scored by COCO OKS AP (each held-out person with its given box, 17 joints only) and PCK@0.1 of
  the box's longer side (``body/heldout/...``).

:func:`pseudo_keypoints` returns one manifest row per prediction: ``kind`` face|body, ``origin``
heldout|unlabeled, image-coordinate points (``landmarks`` for faces, ``keypoints`` for bodies, with
``image_id`` and ``person``, the index in the row's ``persons``) clipped to the image, per-point
``confidence``; the quarantine rows of images without a face or a person box; the model record of each
task that trained (``KeypointModel.to_record``: ``torch.save`` it, load with ``weights_only=True``); and
the metrics. With ``compare_supervised`` a network trained on the labelled crops alone is scored on the
same held-out crops (``supervised/...``): what the semi-supervised part buys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import torch

from faceops.align import detect_faces
from faceops.align.crop import box_matrix, crop_matrix, from_crop, to_crop, warp_crop
from faceops.config.keypoints import KeypointsParams
from faceops.data.split import identity_unit
from faceops.keypoints.api import predict_keypoints, train_keypoint_models
from faceops.keypoints.metrics import inter_ocular, nme, oks_ap, pck
from faceops.keypoints.sspcm import SSPCMConfig
from faceops.progress import ProgressBar, no_progress

__all__ = ["BODY_BOX_SCALE", "HOLDOUT_SALT", "KeypointsResult", "pseudo_keypoints"]

HOLDOUT_SALT = "keypoints-holdout"
BODY_BOX_SCALE = 1.25  # crop side / the person box's longer side: the whole person plus a margin
COCO_JOINTS = 17  # OKS AP needs per-joint sigmas; the library knows COCO's 17

MatrixFn = Callable[..., np.ndarray]  # (zoom=, shift=) -> [2, 3] image -> crop


@dataclass
class _Target:
    """One crop whose points the model predicts; held-out ones keep their truth for scoring."""

    id: str
    source: str
    origin: str  # "heldout" | "unlabeled"
    crop: np.ndarray  # [S, S, 3] uint8
    matrix: np.ndarray  # [2, 3] image -> crop
    image_size: tuple[int, int]  # (width, height): predictions are clipped to the image
    truth: np.ndarray | None = None  # held-out: [J, 3] image (x, y, visible)
    box: np.ndarray | None = None  # bodies: [4] (x, y, w, h)
    extra: dict[str, Any] = field(default_factory=dict)  # more manifest fields


@dataclass
class _Task:
    """Everything one model sees: labelled crops to train on, targets to predict, images skipped."""

    kind: str  # manifest "kind"
    prefix: str  # metrics key prefix
    point_key: str  # manifest key of the points
    skip_reason: str  # quarantine reason of an image with nothing to crop
    images: list[np.ndarray] = field(default_factory=list)  # [S, S, 3] uint8
    points: list[np.ndarray] = field(default_factory=list)  # [J, 2] crop pixels
    visible: list[np.ndarray] = field(default_factory=list)  # [J] bool
    targets: list[_Target] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    num_joints: int | None = None

    def counts(self) -> dict[str, int]:
        origins = [t.origin for t in self.targets]
        return {f"{self.prefix}labelled": len(self.images), f"{self.prefix}heldout": origins.count("heldout"),
                f"{self.prefix}unlabeled": origins.count("unlabeled"),
                f"{self.prefix}{self.skip_reason}": len(self.quarantine)}  # fmt: skip

    def check_joints(self, count: int, source: str) -> None:
        """One model predicts one joint set: refuse a source whose persons have another count."""
        if self.num_joints is None:
            self.num_joints = count
        elif count != self.num_joints:
            raise ValueError(f"source {source!r} has persons with {count} joints but an earlier one has "
                             f"{self.num_joints}; one body model needs one joint set, so list sources with "
                             "the same joints in keypoints.sources")  # fmt: skip


def _held_out(row_id: str, cfg: KeypointsParams) -> bool:
    return identity_unit(row_id, salt=HOLDOUT_SALT) < cfg.holdout_fraction


def _jitter(rng: np.random.Generator, jitter: float) -> dict[str, Any]:
    """Random crop zoom and shift: labelled crops stand in for a rough locator's, not a perfect one."""
    return {"zoom": 1.0 + rng.uniform(-1.5, 1.5) * jitter, "shift": tuple(rng.uniform(-jitter, jitter, 2))}


def _image_size(image: np.ndarray) -> tuple[int, int]:
    return image.shape[1], image.shape[0]


def _add_labelled(task: _Task, image: np.ndarray, make_matrix: MatrixFn, truth: np.ndarray, cfg: KeypointsParams,
                  rng: np.random.Generator, held_out: bool, **target: Any) -> None:  # fmt: skip
    """A jittered crop around given points [J, 3] (x, y, v): training data, or a held-out target."""
    matrix = make_matrix(**_jitter(rng, cfg.crop_jitter))
    crop = warp_crop(image, matrix, cfg.input_size)
    if held_out:
        task.targets.append(_Target(origin="heldout", crop=crop, matrix=matrix, truth=truth, **target))
        return
    task.images.append(crop)
    task.points.append(to_crop(truth[:, :2], matrix))
    task.visible.append(truth[:, 2] > 0)


def _add_unlabeled(task: _Task, image: np.ndarray, matrix: np.ndarray, size: int, **target: Any) -> None:
    task.targets.append(_Target(origin="unlabeled", crop=warp_crop(image, matrix, size), matrix=matrix, **target))


def _add_face(task: _Task, row: dict, image: np.ndarray, cfg: KeypointsParams, rng: np.random.Generator) -> None:
    size = cfg.input_size
    target = {"id": row["id"], "source": row["source"], "image_size": _image_size(image)}
    given = row["labels"].get("landmarks")
    if given is not None:
        points = np.asarray(given, dtype=np.float64)
        truth = np.concatenate([points, np.ones((len(points), 1))], axis=1)
        make = partial(crop_matrix, points, size, spread=cfg.crop_spread)
        _add_labelled(task, image, make, truth, cfg, rng, _held_out(row["id"], cfg), **target)
        return
    faces = detect_faces(image, detector=cfg.detector, min_score=cfg.min_score)
    if not faces:
        task.quarantine.append({"source": row["source"], "path": row["path"], "stage": "keypoints",
                                "reason": task.skip_reason,
                                "detail": f"no face scored >= {cfg.min_score}"})  # fmt: skip
        return
    _add_unlabeled(task, image, crop_matrix(faces[0].landmarks, size, spread=cfg.crop_spread), size, **target)


def _add_body(task: _Task, row: dict, image: np.ndarray, cfg: KeypointsParams, rng: np.random.Generator) -> None:
    """Every person with a box of some extent: labelled if a joint is visible, else a target."""
    size, held_out, found = cfg.input_size, _held_out(row["id"], cfg), 0
    for k, person in enumerate(row["labels"]["persons"]):
        box = np.asarray(person["bbox"], dtype=np.float64)
        if box[2:].max() <= 0:
            continue
        found += 1
        truth = np.asarray(person["keypoints"], dtype=np.float64)
        task.check_joints(len(truth), row["source"])
        target = {"id": f"{row['id']}_p{k}", "source": row["source"], "image_size": _image_size(image), "box": box,
                  "extra": {"image_id": row["id"], "person": k}}  # fmt: skip
        make = partial(box_matrix, box, size, scale=BODY_BOX_SCALE)
        if (truth[:, 2] > 0).any():
            _add_labelled(task, image, make, truth, cfg, rng, held_out, **target)
        else:
            _add_unlabeled(task, image, make(), size, **target)
    if not found:
        task.quarantine.append({"source": row["source"], "path": row["path"], "stage": "keypoints",
                                "reason": task.skip_reason, "detail": "no annotated person box with w or h > 0; "
                                "bodies are only cropped from annotated boxes (no person detector)"})  # fmt: skip


def _fit_predict(task: _Task, cfg: KeypointsParams, config: SSPCMConfig, seed: int, rng: np.random.Generator,
                 progress: ProgressBar) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:  # fmt: skip
    """Train on the labelled crops plus up to ``max_unlabeled`` targets, predict every target.

    Returns:
        the model record, points [N, J, 2] in image pixels (clipped to the image) and confidence [N, J].
    """
    crops = np.stack([t.crop for t in task.targets])
    train_rows = np.sort(rng.permutation(len(crops))[: cfg.max_unlabeled])
    with progress(f"keypoints {task.kind}: {config.method}", cfg.epochs, "epochs") as advance:
        model = train_keypoint_models(np.stack(task.images), np.stack(task.points), crops[train_rows], config=config,
                                      seed=seed, labeled_visible=np.stack(task.visible),
                                      on_epoch=lambda _: advance(1))  # fmt: skip
    points, confidence = predict_keypoints(model, crops)
    in_image = np.stack([np.clip(from_crop(p, t.matrix), 0, np.subtract(t.image_size, 1))
                         for t, p in zip(task.targets, points, strict=True)])  # fmt: skip
    return model.to_record(), in_image, confidence


def _supervised_scores(task: _Task, cfg: KeypointsParams, config: SSPCMConfig, seed: int,
                       progress: ProgressBar) -> dict[str, float]:  # fmt: skip
    """The held-out scores of one network trained on the labelled crops alone (SSPCM's teacher
    without the unlabeled data), keys prefixed ``supervised/``: what the semi-supervised part buys,
    measured on the same crops in every run. Its own generator, so the main outputs do not change."""
    if not any(t.origin == "heldout" for t in task.targets):
        return {}
    baseline = replace(config, method="supervised")
    _, points, confidence = _fit_predict(task, cfg, baseline, seed, np.random.default_rng(seed), progress)
    return {f"supervised/{key}": value for key, value in _scores(task, points, confidence).items()}


def _face_scores(truth: np.ndarray, found: np.ndarray) -> dict[str, float]:
    """NME and PCK@0.1 of the inter-ocular distance; ``truth`` [H, 5, 3], ``found`` [H, 5, 2]."""
    points = truth[..., :2]
    return {"heldout/nme": nme(found, points), "heldout/pck@0.1": pck(found, points, inter_ocular(points), alpha=0.1)}


def _body_scores(truth: np.ndarray, found: np.ndarray, boxes: np.ndarray, confidence: np.ndarray) -> dict[str, float]:
    """PCK@0.1 of the box's longer side over visible joints, and OKS AP for COCO's 17 joints.

    OKS AP scores each held-out person as its own image with its given box (COCO's protocol with
    ground-truth boxes: the crop came from that box), detection score = mean joint confidence; the
    OKS area is the box area (the sources give no segmentation area).

    Args:
        truth: [H, J, 3] (x, y, v); found: [H, J, 2]; boxes: [H, 4] (x, y, w, h); confidence: [H, J].
    """
    visible = truth[..., 2] > 0
    scores = {"body/heldout/pck@0.1": pck(found, truth[..., :2], boxes[:, 2:].max(axis=1), alpha=0.1, visible=visible)}
    if truth.shape[1] != COCO_JOINTS:
        return scores
    ground_truth: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    detections = []
    for i, (joints, points, box, conf) in enumerate(zip(truth, found, boxes, confidence, strict=True), start=1):
        ground_truth["images"].append({"id": i})
        ground_truth["annotations"].append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 0,
                                            "bbox": box.tolist(), "area": float(box[2] * box[3]),
                                            "num_keypoints": int((joints[:, 2] > 0).sum()),
                                            "keypoints": joints.ravel().tolist()})  # fmt: skip
        flat = np.concatenate([points, np.ones((len(points), 1))], axis=1).ravel().tolist()
        detections.append({"image_id": i, "category_id": 1, "keypoints": flat, "score": float(conf.mean())})
    return {**scores, "body/heldout/oks_ap": oks_ap(ground_truth, detections)["AP"]}


def _scores(task: _Task, points: np.ndarray, confidence: np.ndarray) -> dict[str, float]:
    """The held-out targets' metrics (empty when none is held out)."""
    held = [i for i, t in enumerate(task.targets) if t.origin == "heldout"]
    if not held:
        return {}
    truth = np.stack([task.targets[i].truth for i in held])
    if task.kind == "face":
        scores = _face_scores(truth, points[held])
    else:
        boxes = np.stack([task.targets[i].box for i in held])
        scores = _body_scores(truth, points[held], boxes, confidence[held])
    return {**scores, f"{task.prefix}heldout/mean_confidence": float(confidence[held].mean())}


def _manifest_rows(task: _Task, points: np.ndarray, confidence: np.ndarray) -> list[dict[str, Any]]:
    return [{"id": t.id, "source": t.source, "origin": t.origin, "kind": task.kind, **t.extra,
             task.point_key: np.round(p, 3).tolist(), "confidence": np.round(c.astype(np.float64), 4).tolist()}
            for t, p, c in zip(task.targets, points, confidence, strict=True)]  # fmt: skip


@dataclass(frozen=True)
class KeypointsResult:
    """What :func:`pseudo_keypoints` found (see the module docstring).

    Attributes:
        models: task kind (``"face"``, ``"body"``) -> its model record, for each task that trained.
        manifest: one row per prediction, sorted by id.
        quarantine: rows of the images with nothing to crop (faces first, then bodies).
        metrics: counts per task and the held-out scores.
    """

    models: dict[str, dict[str, Any]]
    manifest: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]
    metrics: dict[str, float | int]


def pseudo_keypoints(
    rows: Sequence[dict[str, Any]], load_image: Callable[[dict[str, Any]], np.ndarray], cfg: KeypointsParams, *,
    seed: int, progress: ProgressBar = no_progress,
) -> KeypointsResult:  # fmt: skip
    """Crop, train, predict and score the keypoints of the manifest ``rows`` (ingest manifest rows).

    Args:
        rows: the rows to use, in manifest order: faces (``labels.landmarks`` or none) and COCO images
            (``labels.persons``).
        load_image: a row -> its [H, W, 3] uint8 RGB image (coordinates as the labels give them).
        cfg: the ``keypoints`` params section.
        seed: seeds the crop jitter, the choice of unlabeled training crops and torch (the networks).
        progress: a bar per step (crops, then each training run).

    Raises:
        ValueError: two body sources whose persons have different joint counts.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    faces = _Task("face", "", "landmarks", "no_face")
    bodies = _Task("body", "body/", "keypoints", "no_person")
    with progress("keypoints: crops", len(rows), "images") as advance:
        for row in rows:
            advance(1)
            image = load_image(row)
            if "persons" in row["labels"]:
                _add_body(bodies, row, image, cfg, rng)
            else:
                _add_face(faces, row, image, cfg, rng)
    config = SSPCMConfig(
        method=cfg.method, input_size=(cfg.input_size, cfg.input_size), epochs=cfg.epochs, batch_size=cfg.batch_size,
        lr=cfg.lr, score_threshold=cfg.score_threshold, inconsistency_filter=cfg.inconsistency_filter,
        inconsistency_threshold=cfg.inconsistency_threshold,
    )  # fmt: skip
    models: dict[str, dict[str, Any]] = {}
    manifest: list[dict[str, Any]] = []
    metrics: dict[str, float | int] = {}
    for task in (faces, bodies):
        metrics.update(task.counts())
        if not (task.images and task.targets):
            continue
        models[task.kind], points, confidence = _fit_predict(task, cfg, config, seed, rng, progress)
        manifest += _manifest_rows(task, points, confidence)
        metrics.update(_scores(task, points, confidence))
        if cfg.compare_supervised and config.method == "sspcm":
            metrics.update(_supervised_scores(task, cfg, config, seed, progress))
    return KeypointsResult(models, sorted(manifest, key=lambda m: m["id"]), faces.quarantine + bodies.quarantine,
                           metrics)  # fmt: skip
