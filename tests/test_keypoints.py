"""Tests for faceops.keypoints (SSPCM): heatmaps, affine consistency, pair selection, masks, Cut-Occlude, loop."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from faceops.keypoints import (
    PAIR_NAMES,
    KeypointModel,
    SSPCMConfig,
    affine_theta,
    build_nets,
    consistency_loss,
    cut_occlude,
    decode_heatmaps,
    encode_heatmaps,
    fit_sspcm,
    fit_supervised,
    heatmap_to_image,
    image_to_heatmap,
    joints_mse,
    nme,
    oks_ap,
    outlier_weights,
    pck,
    predict_keypoints,
    predict_points,
    pseudo_keypoints,
    pseudo_targets,
    rampup_weight,
    select_pairs,
    train_keypoint_models,
    warp,
    warp_points,
)
from faceops.models import create_model


def _maps(points: list[list[tuple[float, float]]], size: tuple[int, int] = (16, 16), amp: float = 1.0) -> torch.Tensor:
    return amp * encode_heatmaps(torch.tensor(points, dtype=torch.float32), size, sigma=1.5)


# --- heatmaps -------------------------------------------------------------------------------------


@pytest.mark.parametrize("refine", [False, True])
def test_decode_synthetic_gaussian_is_exact(refine: bool) -> None:
    points = [[(3.0, 7.0), (0.0, 0.0), (15.0, 11.0), (8.0, 2.0)]]
    maps = 0.7 * encode_heatmaps(torch.tensor(points), (12, 16), sigma=2.0)
    coords, maxvals = decode_heatmaps(maps, refine=refine)
    assert torch.equal(coords, torch.tensor(points))
    assert torch.allclose(maxvals, torch.full((1, 4), 0.7))


def test_refine_moves_towards_the_true_subpixel_peak() -> None:
    coords, _ = decode_heatmaps(_maps([[(5.3, 9.8)]]), refine=True)
    assert torch.equal(coords, torch.tensor([[[5.25, 9.75]]]))


def test_encode_masks_invisible_and_rejects_bad_sigma() -> None:
    maps = encode_heatmaps(torch.tensor([[[4.0, 4.0], [8.0, 8.0]]]), (16, 16), visible=torch.tensor([[1, 0]]))
    assert maps[0, 0].max() == 1.0 and maps[0, 1].abs().sum() == 0
    with pytest.raises(ValueError, match="sigma"):
        encode_heatmaps(torch.zeros(1, 1, 2), (4, 4), sigma=0)


def test_image_heatmap_coordinates_round_trip() -> None:
    p = torch.tensor([[[0.0, 63.0], [17.5, 30.25]]])
    assert torch.allclose(heatmap_to_image(image_to_heatmap(p, 4), 4), p)
    assert torch.equal(image_to_heatmap(torch.tensor([1.5, 5.5]), 4), torch.tensor([0.0, 1.0]))


# --- affine ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(64, 64), (64, 48)])
def test_affine_keeps_image_and_heatmap_peaks_on_the_warped_keypoint(size: tuple[int, int]) -> None:
    height, width = size
    point = torch.tensor([[[30.5, 22.5]]])  # image px; (30.5, 22.5) -> heatmap (7.5, 5.5)
    image = encode_heatmaps(point, size, sigma=3.0)  # a blob drawn at the keypoint
    heatmap = encode_heatmaps(image_to_heatmap(point, 4), (height // 4, width // 4), sigma=2.0)
    theta = affine_theta(torch.tensor([1.2]), torch.tensor([35.0]), size)
    moved = warp_points(point, theta, size)
    assert not torch.allclose(moved, point, atol=2.0)  # the warp does move the keypoint
    # image peak: sub-pixel accurate on the warped point (refined argmax, 1 px tolerance)
    image_peak, _ = decode_heatmaps(warp(image, theta), refine=True)
    assert torch.linalg.vector_norm(image_peak - moved) <= 1.0
    # heatmap peak, warped by the same theta, lands on the warped keypoint in heatmap coordinates
    hm_peak, _ = decode_heatmaps(warp(heatmap, theta), refine=True)
    assert torch.linalg.vector_norm(hm_peak - image_to_heatmap(moved, 4)) <= 0.75
    # the same theta maps points consistently at both resolutions
    assert torch.allclose(warp_points(image_to_heatmap(point, 4), theta, (height // 4, width // 4)), image_to_heatmap(moved, 4), atol=1e-4)


def test_rotation_preserves_distances_on_non_square_images() -> None:
    size = (64, 32)
    pts = torch.tensor([[[10.0, 10.0], [20.0, 50.0]]])
    out = warp_points(pts, affine_theta(torch.tensor([1.0]), torch.tensor([90.0]), size), size)
    assert math.isclose(float((out[0, 0] - out[0, 1]).norm()), float((pts[0, 0] - pts[0, 1]).norm()), rel_tol=1e-5)


# --- pair selection and outlier weights ------------------------------------------------------------


def test_pair_selection_picks_the_minimum_distance_pair_and_averages_it() -> None:
    # four joints; per joint, positions of (cur1, cur2, prev1, prev2) chosen so pair k is closest for joint k
    pos = {
        "cur1": [(2, 2), (2, 2), (8, 8), (12, 3)],
        "cur2": [(3, 2), (9, 9), (12, 12), (2, 13)],
        "prev1": [(10, 10), (9, 8), (1, 1), (3, 12)],
        "prev2": [(14, 14), (14, 0), (8, 9), (3, 13)],
    }
    maps = {k: _maps([v]) for k, v in pos.items()}
    chosen = select_pairs((maps["cur1"], maps["cur2"]), (maps["prev1"], maps["prev2"]))
    assert chosen.pair.tolist() == [[0, 1, 2, 3]]
    pairs = [("cur1", "cur2"), ("prev1", "cur2"), ("cur1", "prev2"), ("prev1", "prev2")]
    for j, (a, b) in enumerate(pairs):
        assert torch.allclose(chosen.target[0, j], (maps[a][0, j] + maps[b][0, j]) / 2)
        all_d = [math.dist(pos[x][j], pos[y][j]) for x, y in pairs]
        assert math.isclose(float(chosen.distance[0, j]), min(all_d), rel_tol=1e-6)
    assert len(PAIR_NAMES) == 4


def test_pair_selection_warmup_falls_back_to_the_current_pair() -> None:
    h1, h2 = _maps([[(2, 2)]]), _maps([[(5, 6)]])
    chosen = select_pairs((h1, h2), None)
    assert torch.equal(chosen.target, (h1 + h2) / 2) and chosen.pair.tolist() == [[0]]
    assert math.isclose(float(chosen.distance), 5.0)


def test_outlier_weights_score_mask_inconsistency_filter_and_reweight() -> None:
    h1 = torch.cat([_maps([[(2, 2), (2, 2), (2, 2)]], amp=0.05)[:, :1], _maps([[(2, 2), (2, 2)]])], dim=1)
    h2 = torch.cat([_maps([[(2, 2)]], amp=0.05), _maps([[(5, 6), (15, 15)]])], dim=1)
    diag = math.hypot(16, 16)
    w = outlier_weights(h1, h2)
    d_far = math.dist((2, 2), (15, 15))  # 18.38 / 22.6 = 0.81 >= 0.6: removed
    assert w[0, 0] == 0  # low mean score
    assert math.isclose(float(w[0, 1]), (diag - 5.0) / diag, rel_tol=1e-6)
    assert w[0, 2] == 0 and d_far / diag >= 0.6
    no_reweight = outlier_weights(h1, h2, reweight=False)
    assert no_reweight.tolist() == [[0.0, 1.0, 0.0]]
    off = outlier_weights(h1, h2, inconsistency_filter=False)
    assert off.tolist() == [[0.0, 1.0, 1.0]]


# --- losses ---------------------------------------------------------------------------------------


def test_masked_joints_contribute_exactly_zero_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    students = tuple(torch.randn(2, 3, 8, 8, generator=gen, requires_grad=True) for _ in range(3))
    targets = tuple(torch.rand(2, 3, 8, 8, generator=gen) for _ in range(3))
    teacher_low = _maps([[(1, 1), (2, 2), (3, 3)]] * 2, size=(8, 8))
    teacher_low[:, 1] *= 0.05  # joint 1: mean score 0.05 <= 0.1 -> weight 0
    w = outlier_weights(teacher_low, teacher_low)
    assert torch.all(w[:, 1] == 0) and torch.all(w[:, [0, 2]] > 0)
    consistency_loss(students, targets, (w, w, w)).backward()
    for c in students:
        assert torch.all(c.grad[:, 1] == 0)
        assert torch.all(c.grad[:, [0, 2]].abs().sum(dim=(-1, -2)) > 0)


def test_joints_mse_value_and_shape_check() -> None:
    pred, target = torch.ones(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    assert math.isclose(float(joints_mse(pred, target)), 0.5)
    assert math.isclose(float(joints_mse(pred, target, torch.tensor([[1.0, 0.0]]))), 0.25)
    with pytest.raises(ValueError, match="same shape"):
        joints_mse(pred, torch.zeros(1, 2, 2, 3))


# --- Cut-Occlude ----------------------------------------------------------------------------------


def test_cut_occlude_only_changes_pixels_inside_boxes_centred_on_the_points() -> None:
    n, size = 4, 40
    images = torch.arange(1, n + 1, dtype=torch.float32)[:, None, None, None].expand(n, 3, size, size).clone()
    images += torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * 0.1
    points = torch.tensor([[[12.0, 20.0], [28.0, 9.0], [20.0, 30.0]]]).repeat(n, 1, 1) + torch.arange(n)[:, None, None]
    out = cut_occlude(images, points, generator=torch.Generator().manual_seed(3), half_size=(3, 6), jitter=0.0)
    assert out.images.shape == images.shape
    inside = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        for (x0, y0, x1, y1), (cx, cy) in zip(out.boxes[i].tolist(), out.centres[i].tolist(), strict=True):
            inside[i, y0:y1, x0:x1] = True
            assert (cx, cy) in [tuple(p) for p in points[i].to(torch.int64).tolist()]  # jitter 0: on a keypoint
            assert (x0 + x1 - 1) / 2 == cx and (y0 + y1 - 1) / 2 == cy  # boxes lie inside: exactly centred
            assert 7 <= x1 - x0 <= 11 and 7 <= y1 - y0 <= 11  # 2 * half + 1, half in [3, 6)
    changed = (out.images != images).any(dim=1)
    assert not changed[~inside].any()
    assert changed.any()
    # pasted pixels come from a donor image (each image is offset by its index + 1)
    assert set(out.images[:, 0][inside].floor().unique().tolist()) <= {1.0, 2.0, 3.0, 4.0}


def test_cut_occlude_clips_at_borders_and_zero_fills() -> None:
    # image 0 (all 1) has its keypoint in the corner, image 1 (all 2) in the middle; half sizes are 2
    images = torch.stack([torch.ones(1, 10, 10), torch.full((1, 10, 10), 2.0)])
    points = torch.tensor([[[0.0, 0.0]], [[5.0, 5.0]]])
    seen_corner_donor = False
    for seed in range(12):
        out = cut_occlude(images, points, generator=torch.Generator().manual_seed(seed), n_patches=1, half_size=(2, 3), jitter=0.0)
        assert out.boxes[0, 0].tolist() == [0, 0, 3, 3]  # clipped at the corner
        assert out.boxes[1, 0].tolist() == [3, 3, 8, 8]
        box = out.images[1, 0, 3:8, 3:8]
        if (box == 1).any():  # donor 0: the part of its box outside the image pastes as zeros
            seen_corner_donor = True
            assert box[:2].eq(0).all() and box[:, :2].eq(0).all() and box[2:, 2:].eq(1).all()
    assert seen_corner_donor


# --- models and metrics ---------------------------------------------------------------------------


def test_tiny_model_heatmap_shape() -> None:
    net = create_model("sspcm_tiny", num_joints=5)
    assert net(torch.zeros(2, 3, 64, 48)).shape == (2, 5, 16, 12)
    with pytest.raises(ValueError, match="heatmap_stride"):
        create_model("sspcm_tiny", heatmap_stride=3)


def test_nme_and_pck_hand_computed() -> None:
    gt = np.array([[[0, 0], [10, 0], [5, 5], [2, 9], [8, 9]]], dtype=float)  # inter-ocular 10
    pred = gt.copy()
    pred[0, 2] += (3, 4)  # error 5 on the nose
    assert math.isclose(nme(pred, gt), 5 / 5 / 10)
    assert math.isclose(pck(pred, gt, np.array([10.0]), alpha=0.4), 4 / 5)
    assert math.isclose(pck(pred, gt, np.array([10.0]), alpha=0.5), 1.0)
    assert math.isclose(nme(pred, gt, visible=np.array([[1, 1, 0, 1, 1]])), 0.0)


def _coco_gt() -> dict:
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for k in range(3):
        kps = np.concatenate([rng.uniform(50, 150, (17, 2)), np.full((17, 1), 2.0)], axis=1)
        images.append({"id": k + 1, "width": 200, "height": 200, "file_name": f"{k}.jpg"})
        annotations.append({"id": k + 1, "image_id": k + 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
                            "keypoints": kps.ravel().tolist(), "bbox": [40, 40, 120, 120], "area": 120 * 120})  # fmt: skip
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}


def test_oks_ap_is_one_for_exact_keypoints_and_drops_with_noise() -> None:
    gt = _coco_gt()
    exact = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in gt["annotations"]]
    assert oks_ap(gt, exact)["AP"] == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    noisy = []
    for det in exact:
        kps = np.array(det["keypoints"]).reshape(17, 3)
        kps[:, :2] += rng.normal(0, 15, (17, 2))
        noisy.append({**det, "keypoints": kps.ravel().tolist()})
    assert oks_ap(gt, noisy)["AP"] < 1.0


# --- training loop --------------------------------------------------------------------------------


def _blob_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with 2 coloured blobs at random positions; the keypoints are the blob centres."""
    gen = torch.Generator().manual_seed(seed)
    pts = 6 + torch.rand(n, 2, 2, generator=gen) * 20
    blobs = encode_heatmaps(pts, (32, 32), sigma=2.0)
    images = torch.stack([blobs[:, 0], blobs[:, 1], blobs.sum(1) * 0.5], dim=1)
    return images, pts


@pytest.mark.parametrize("target", ["gaussian", "heatmap"])
def test_fit_sspcm_runs_warmup_and_snapshot_epochs_and_reports_history(target: str) -> None:
    images, pts = _blob_task(8, 0)
    unlabelled, _ = _blob_task(16, 1)
    nets = build_nets("sspcm_tiny", 3, seed=0, num_joints=2)
    before = [p.detach().clone() for p in nets[2].parameters()]
    cfg = SSPCMConfig(epochs=2, batch_size=8, input_size=(32, 32), target=target)  # type: ignore[arg-type]
    result = fit_sspcm(nets, images, pts, torch.ones(8, 2), unlabelled, cfg=cfg, seed=0)
    assert len(result.history) == 2
    for row in result.history:
        assert all(math.isfinite(v) for v in row.values())
        assert math.isclose(sum(row[f"pair/{p}"] for p in PAIR_NAMES), 1.0, rel_tol=1e-5)
        assert 0.0 <= row["kept"] <= 1.0
    assert result.history[0]["pair/cur1-cur2"] == 1.0  # warm-up epoch: current pair only
    assert any(not torch.equal(a, b) for a, b in zip(before, nets[2].parameters()))
    points, scores = predict_points(result.nets, images)
    assert points.shape == (8, 2, 2) and scores.shape == (8, 2) and all(n.training for n in nets)


def test_fit_supervised_reduces_loss_and_is_seeded() -> None:
    images, pts = _blob_task(16, 2)
    cfg = SSPCMConfig(epochs=3, batch_size=8, lr=3e-3)
    runs = [fit_supervised(build_nets("sspcm_tiny", 1, seed=5, num_joints=2)[0], images, pts, torch.ones(16, 2),
                           steps_per_epoch=4, cfg=cfg, seed=1) for _ in range(2)]  # fmt: skip
    assert runs[0].history == runs[1].history
    assert runs[0].history[-1]["loss"] < runs[0].history[0]["loss"]
    with pytest.raises(ValueError, match="3 networks"):
        fit_sspcm(runs[0].nets, images, pts, torch.ones(16, 2), images, cfg=cfg, seed=0)


# --- pseudo-label targets and ramp-up (the fixes measured in bench/keypoints.py) --------------------


def test_gaussian_pseudo_targets_sit_on_the_warped_teacher_keypoint_and_drop_off_map_joints() -> None:
    points = torch.tensor([[[7.0, 8.0], [0.0, 15.0]]])  # joint 1 near a corner leaves the map
    teacher = encode_heatmaps(points, (16, 16), sigma=2.0)
    theta = affine_theta(torch.tensor([0.8]), torch.tensor([30.0]), (16, 16))
    moved = warp_points(points, theta, (16, 16))
    target, weight = pseudo_targets(teacher, theta, torch.ones(1, 2), sigma=2.0)
    assert weight.tolist() == [[1.0, 0.0]]
    assert torch.allclose(target, encode_heatmaps(moved, (16, 16), sigma=2.0, visible=weight))  # a labelled-style target
    assert torch.all((decode_heatmaps(target)[0][0, 0] - moved[0, 0]).abs() <= 0.5)
    assert target[0, 1].abs().sum() == 0
    # the released code's soft target: the warped heatmap itself, weights untouched, its peak blurred lower
    soft, soft_weight = pseudo_targets(teacher, theta, torch.ones(1, 2), target="heatmap")
    assert torch.equal(soft, warp(teacher, theta)) and soft_weight.tolist() == [[1.0, 1.0]]
    assert soft[0, 0].max() < target[0, 0].max()


def test_rampup_weight_is_a_monotone_sigmoid_ramp_ending_at_one() -> None:
    values = [rampup_weight(step, 10) for step in range(0, 15)]
    assert math.isclose(values[0], math.exp(-5.0))
    assert all(a < b for a, b in zip(values[:10], values[1:11], strict=True))
    assert values[10:] == [1.0] * 5
    assert rampup_weight(0, 0) == 1.0


# --- stage-facing API -----------------------------------------------------------------------------


def _uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_train_predict_and_record_round_trip_through_weights_only_load() -> None:
    labelled, pts = _blob_task(8, 3)
    unlabelled, _ = _blob_task(8, 4)
    cfg = SSPCMConfig(epochs=1, batch_size=8, input_size=(32, 32))
    seen: list[dict] = []
    model = train_keypoint_models(_uint8(labelled), pts.numpy(), _uint8(unlabelled), config=cfg, seed=0, on_epoch=seen.append)
    assert len(model.nets) == 3 and model.predictors == model.nets[2:] and len(seen) == 1
    points, confidence = predict_keypoints(model, _uint8(unlabelled))
    assert points.shape == (8, 2, 2) and confidence.shape == (8, 2)
    assert points.dtype == np.float32 and confidence.dtype == np.float32
    assert np.all((points >= -0.5) & (points <= 31.5))  # input pixel coordinates
    buffer = io.BytesIO()
    torch.save(model.to_record(), buffer)
    buffer.seek(0)
    restored = KeypointModel.from_record(torch.load(buffer, weights_only=True))
    assert restored.config == cfg and restored.num_joints == 2
    again, conf_again = predict_keypoints(restored, _uint8(unlabelled))
    assert np.array_equal(points, again) and np.array_equal(confidence, conf_again)
    supervised = train_keypoint_models(_uint8(labelled), pts.numpy(), _uint8(unlabelled), config=SSPCMConfig(
        method="supervised", epochs=1, batch_size=8, input_size=(32, 32)), seed=0)  # fmt: skip
    assert len(supervised.nets) == 1 and supervised.predictors == supervised.nets


def test_api_rejects_wrong_images_configs_and_records() -> None:
    cfg = SSPCMConfig(epochs=1, batch_size=8, input_size=(32, 32))
    good = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="crop them"):
        train_keypoint_models(np.zeros((2, 64, 64, 3), np.uint8), np.zeros((2, 2, 2)), good, config=cfg, seed=0)
    with pytest.raises(ValueError, match="uint8"):
        train_keypoint_models(good.astype(np.float32), np.zeros((2, 2, 2)), good, config=cfg, seed=0)
    with pytest.raises(ValueError, match="labeled_points"):
        train_keypoint_models(good, np.zeros((3, 2, 2)), good, config=cfg, seed=0)
    with pytest.raises(ValueError, match="target"):
        SSPCMConfig(target="soft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="format"):
        KeypointModel.from_record({"format": "other"})


# ---- pseudo_keypoints: the keypoints stage's work on manifest rows in memory ---------------------------------

FACE_POINTS = np.array([[38.0, 42.0], [58.0, 42.0], [48.0, 54.0], [40.0, 66.0], [56.0, 66.0]])


def _face_rows(n: int) -> tuple[list[dict], dict[str, np.ndarray]]:
    """``n`` drawn faces with their landmarks, and one blank photo without any (nothing to detect)."""
    import cv2

    rng = np.random.default_rng(0)
    rows, images = [], {}
    for k in range(n):
        points = FACE_POINTS + rng.uniform(-4, 4, 2)
        image = np.full((96, 96, 3), 80 + 8 * k, np.uint8)
        cv2.ellipse(image, tuple(int(v) for v in points.mean(axis=0)), (22, 30), 0, 0, 360, (170, 140, 120), -1)
        for x, y in points:
            cv2.circle(image, (int(x), int(y)), 3, (30, 30, 30), -1)
        rows.append({"id": f"faces_{k:02d}", "source": "faces", "path": f"{k}.png",
                     "labels": {"landmarks": points.round(2).tolist()}})  # fmt: skip
        images[rows[-1]["id"]] = image
    rows.append({"id": "faces_blank", "source": "faces", "path": "blank.png", "labels": {}})
    images["faces_blank"] = np.full((96, 96, 3), 40, np.uint8)
    return rows, images


def test_pseudo_keypoints_crops_trains_scores_and_quarantines_on_rows_in_memory() -> None:
    from faceops.config.keypoints import KeypointsParams

    rows, images = _face_rows(6)
    cfg = KeypointsParams(epochs=1, batch_size=4, max_unlabeled=4, holdout_fraction=0.5)
    found = pseudo_keypoints(rows, lambda row: images[row["id"]], cfg, seed=0)
    assert list(found.models) == ["face"] and KeypointModel.from_record(found.models["face"]).num_joints == 5
    assert [row["id"] for row in found.manifest] == sorted(row["id"] for row in found.manifest)
    assert {row["origin"] for row in found.manifest} == {"heldout"}  # the blank photo has no face to predict
    assert found.metrics["labelled"] + found.metrics["heldout"] == 6 == len(found.manifest) + found.metrics["labelled"]
    assert [(q["path"], q["reason"], q["stage"]) for q in found.quarantine] == [("blank.png", "no_face", "keypoints")]
    assert found.metrics["no_face"] == 1 and found.metrics["heldout/nme"] > 0.0
    assert found.metrics["supervised/heldout/nme"] > 0.0  # the supervised-only baseline on the same crops
    for row in found.manifest:
        points = np.asarray(row["landmarks"])
        assert row["kind"] == "face" and points.shape == (5, 2) and len(row["confidence"]) == 5
        assert np.all((points >= 0) & (points <= 95))  # clipped to the image
    again = pseudo_keypoints(rows, lambda row: images[row["id"]], cfg, seed=0)
    assert again.manifest == found.manifest and again.metrics == found.metrics  # seeded: same result


def test_pseudo_keypoints_refuses_body_sources_with_different_joint_sets() -> None:
    from faceops.config.keypoints import KeypointsParams

    def person(joints: int) -> dict:
        return {"bbox": [10.0, 10.0, 30.0, 60.0], "keypoints": [[20.0, 20.0, 2.0]] * joints}

    rows = [{"id": f"{source}_0", "source": source, "path": "0.png", "labels": {"persons": [person(joints)]}}
            for source, joints in (("coco", 17), ("other", 5))]  # fmt: skip
    with pytest.raises(ValueError, match="one body model needs one joint set"):
        pseudo_keypoints(rows, lambda row: np.zeros((96, 96, 3), np.uint8), KeypointsParams(), seed=0)
