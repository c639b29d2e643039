"""Low-resolution faces: the one degradation (faceops.sr.degrade), LRFR's LogExp loss (faceops.losses.logexp), its
multi-resolution views as a training term (faceops.train.lowres) and the LR evaluation protocol (faceops.eval.lowres)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare

from faceops.losses.logexp import LogExpLoss, logexp_loss
from faceops.sr.degrade import degrade, resize_bicubic, scaled_side
from faceops.train.lowres import draw_buckets, low_resolution_views


def _face_like(seed: int = 0, size: int = 112) -> np.ndarray:
    """A smooth random RGB image (blurred noise), uint8 [size, size, 3]."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 2.0)


# ---- degradation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [7, 14, 20, 28, 56])
def test_resize_matches_pils_bicubic_down_and_up(side):
    """Within one grey level of PIL's BICUBIC (LRFR's resize, MATLAB-like antialiasing) both ways."""
    image = _face_like()
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
    small_pil = np.asarray(Image.fromarray(image).resize((side, side), Image.BICUBIC))
    small = resize_bicubic(tensor, side)[0].permute(1, 2, 0).numpy()
    assert np.abs(small.astype(int) - small_pil).max() <= 1
    up_pil = np.asarray(Image.fromarray(small_pil).resize((112, 112), Image.BICUBIC))
    up = resize_bicubic(torch.from_numpy(small_pil.copy()).permute(2, 0, 1)[None], 112)[0].permute(1, 2, 0).numpy()
    assert np.abs(up.astype(int) - up_pil).max() <= 1 and np.abs(up.astype(int) - up_pil).mean() < 0.5


def test_downscaling_is_antialiased_unlike_opencv_cubic():
    """A 1-pixel checkerboard shrunk to 30 px: antialiased bicubic gives flat grey, OpenCV's INTER_CUBIC aliases."""
    board = ((np.indices((112, 112)).sum(0) % 2) * 255).astype(np.uint8)
    ours = resize_bicubic(torch.from_numpy(board)[None, None], 30)[0, 0].numpy().astype(float)
    opencv = cv2.resize(board, (30, 30), interpolation=cv2.INTER_CUBIC).astype(float)
    assert ours[2:-2, 2:-2].std() < 1.0 and opencv.std() > 30


def test_degrade_keeps_shape_and_dtype_and_full_resolution_is_identity():
    images = torch.from_numpy(np.stack([_face_like(s) for s in range(3)])).permute(0, 3, 1, 2)
    low = degrade(images, 14)
    assert low.shape == images.shape and low.dtype == torch.uint8
    assert torch.equal(degrade(images, 112), images)
    assert (low.float() - images.float()).abs().mean() > (degrade(images, 56).float() - images.float()).abs().mean()
    assert [scaled_side(r, 56) for r in (7, 14, 20)] == [4, 7, 10] and scaled_side(7, 112) == 7
    with pytest.raises(ValueError, match="batch"):
        resize_bicubic(images[0], 14)


# ---- LogExp ---------------------------------------------------------------------------------------


def _pair(b: int = 4, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("reduction", ["sample", "batch"])
@pytest.mark.parametrize("p", [1.0, 2.0])
def test_logexp_is_zero_on_equal_inputs_nonnegative_and_symmetric(reduction, p):
    x, y = _pair()
    assert logexp_loss(x, x, p=p, reduction=reduction) == 0
    value = logexp_loss(x, y, p=p, reduction=reduction)
    assert value > 0 and value == logexp_loss(y, x, p=p, reduction=reduction)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(logexp_loss(x[:, perm], y[:, perm], p=p, reduction=reduction), value)


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_small_errors_give_the_l1_form(p):
    """For |d| -> 0, L -> sum |d|^p / (p D) (the ratio tends to 1)."""
    x, y = _pair(b=1, d=32)
    d = (y - x) * 1e-6
    l1_form = d.abs().pow(p).sum() / (p * 32)
    assert float(logexp_loss(x, x + d, p=p) / l1_form) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("t", [20.0, 60.0, 800.0])
def test_one_large_error_grows_like_its_power_over_pd(t):
    """One coordinate off by t (others 0): L = log(e^t + ...)/(pD) -> t/(pD), also where e^t overflows float64."""
    x = torch.zeros(1, 64, dtype=torch.float64)
    y = x.clone()
    y[0, 5] = t
    value = float(logexp_loss(x, y))
    assert np.isfinite(value) and value == pytest.approx(t / 64, rel=1e-6)


def test_gradient_is_at_most_one_over_d_per_dimension_and_safe_at_zero():
    """p = 1: |dL/dd_i| <= 1/D, equal when d_i is the only error; identical inputs give a zero, finite gradient."""
    x, y = _pair(b=1, d=16)
    y.requires_grad_(True)
    logexp_loss(x, y).backward()
    assert (y.grad.abs() <= 1 / 16 + 1e-12).all() and (y.grad.abs() > 0).all()
    single = x.clone()
    single[0, 3] += 0.7
    single.requires_grad_(True)
    logexp_loss(x, single).backward()
    assert single.grad[0, 3] == pytest.approx(1 / 16) and single.grad[0, torch.arange(16) != 3].abs().max() == 0
    same = x.clone().requires_grad_(True)
    logexp_loss(x, same).backward()
    assert torch.isfinite(same.grad).all() and (same.grad == 0).all()


def test_batch_variant_is_the_codes_and_equals_the_papers_for_one_sample_up_to_d():
    x, y = _pair(b=1, d=16)
    torch.testing.assert_close(logexp_loss(x, y, reduction="batch") / 16, logexp_loss(x, y, reduction="sample"))
    xb, yb = _pair(b=5, d=16)
    a = (xb - yb).abs()
    torch.testing.assert_close(logexp_loss(xb, yb, reduction="batch"), torch.log1p(torch.expm1(a).sum()) / 5)
    with pytest.raises(ValueError, match="p >= 1"):
        LogExpLoss(p=0.5)
    with pytest.raises(ValueError, match="one shape"):
        logexp_loss(xb, yb[:, :3])


# ---- multi-resolution views -----------------------------------------------------------------------


def test_bucket_frequencies_match_their_probabilities():
    """Seeded draws of LRFR's 50/30/20 buckets pass a chi-square test; a zero-probability bucket never comes."""
    counts = np.bincount(draw_buckets(20_000, [0.5, 0.3, 0.2], torch.Generator().manual_seed(0)).numpy(), minlength=3)
    assert chisquare(counts, [10_000, 6_000, 4_000]).pvalue > 0.01
    released = draw_buckets(5_000, [0.5, 0.0, 0.5], torch.Generator().manual_seed(1))
    assert set(released.tolist()) == {0, 2}


def test_views_are_degraded_per_sample_to_their_side():
    faces = torch.from_numpy(np.stack([_face_like(s) for s in range(4)])).permute(0, 3, 1, 2).contiguous()
    sides = torch.tensor([7, 20, 7, 112])
    views = low_resolution_views(faces, sides)
    assert views.shape == faces.shape and views.dtype == torch.uint8
    assert torch.equal(views[0], degrade(faces[:1], 7)[0]) and torch.equal(views[1], degrade(faces[1:2], 20)[0])
    assert torch.equal(views[3], faces[3])


# ---- the term in a training run -------------------------------------------------------------------


def _run(root, *, steps: int, term: bool, resume=None, save=None, progress=None):
    """A recognition-only run on the group shards, with or without LRFR's term (faceops.train)."""
    from faceops.io.shards import split_urls
    from faceops.train import build_training, fit
    from faceops.train.lowres import LowResolutionTerm

    made: list[LowResolutionTerm] = []

    def make(model):
        made.append(LowResolutionTerm(seed=5))
        return made

    run = build_training(
        "swinface_cpu_rec", shard_urls={"blobs": split_urls(root / "blobs", "train")}, shares={"blobs": 1.0},
        batch_size=4, lr=2e-3, weight_decay=0.05, backbone_lr_scale=1.0, warmup_steps=1, steps=steps,
        final_lr_ratio=0.1, margin_scale=16.0, margin_cos=0.2, sample_rate=1.0, hflip=0.5, shuffle_buffer=8,
        num_workers=0, seed=0, make_terms=make if term else None,
    )  # fmt: skip
    rows: list[int] = []
    run.model.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    result = fit(run.model, run.loss_fn, run.optimizer, run.scheduler, run.batches, steps=steps, seed=0,
                 terms=run.terms, resume=resume, save=save, checkpoint_every=2 if save else 0,
                 hooks=[progress] if progress else [])  # fmt: skip
    return run, made, result, rows


@pytest.fixture(scope="module")
def group_shards(tmp_path_factory):
    from group_shards import write_group_source

    root = tmp_path_factory.mktemp("lowres_shards")
    write_group_source(root, per_group=2, per_identity=4)
    return root


def test_views_join_the_one_forward_are_supervised_and_logged(group_shards):
    run, made, result, rows = _run(group_shards, steps=3, term=True)
    assert rows == [8, 8, 8]  # 4 faces + their 4 low-resolution views, one forward per step
    for _, entry in result.history:
        assert entry["loss/lowres"] > 0
        assert entry["loss/total"] == pytest.approx(entry["loss/Recognition"] + entry["loss/lowres"], rel=1e-5)
    assert not torch.equal(made[0].generator.get_state(), torch.Generator().manual_seed(5).get_state())


def test_view_rows_are_the_flipped_faces_degraded_to_the_drawn_buckets(group_shards):
    from faceops.train import normalize_images
    from faceops.train.lowres import LowResolutionTerm

    run, _, _, _ = _run(group_shards, steps=2, term=False)
    batch = next(run.batches)  # flipped by the stream already
    term = LowResolutionTerm(seed=11)
    rows = term.extra_rows(normalize_images(batch.images), batch)
    sides = torch.tensor([7, 14, 20])[draw_buckets(4, [0.5, 0.3, 0.2], torch.Generator().manual_seed(11))]
    torch.testing.assert_close(rows, normalize_images(low_resolution_views(batch.images, sides)))


def test_a_run_with_the_term_resumes_to_identical_weights(group_shards, tmp_path):
    from faceops.io.checkpoint import load_checkpoint, save_checkpoint

    class Killed(Exception):
        pass

    def kill_at_2(info):
        if info.step == 2:
            raise Killed

    full, _, full_result, _ = _run(group_shards, steps=4, term=True)
    path = tmp_path / "last.pt"
    with pytest.raises(Killed):
        _run(group_shards, steps=4, term=True, save=lambda s: save_checkpoint(path, s, kind="resume"),
             progress=kill_at_2)  # fmt: skip
    resumed, _, resumed_result, _ = _run(group_shards, steps=4, term=True, resume=load_checkpoint(path, kind="resume"))
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert full_result.history == resumed_result.history


# ---- the evaluation protocol ----------------------------------------------------------------------


class _MeanColour(torch.nn.Module):
    """A 'recognition model' whose embedding is each face's mean colour (offset): blind to resolution."""

    def forward(self, x):
        return {"Recognition": x.mean(dim=(2, 3)) + torch.tensor([1.0, 0.0, -1.0])}


def test_rank1_is_the_share_of_probes_nearest_to_their_identity():
    from faceops.eval.lowres import rank1

    gallery = np.eye(3, dtype=np.float32)
    probes = np.asarray([[0.9, 0.1, 0], [0, 0.2, 0.8], [0.6, 0.5, 0]], np.float32)
    assert rank1(probes, gallery, [0, 2, 1], [0, 1, 2]) == pytest.approx(2 / 3)


def test_protocol_at_full_resolution_is_plain_verification_and_mean_colour_is_resolution_blind(group_shards):
    from faceops.eval.evaluate import verification_pairs
    from faceops.eval.lowres import embed_faces, lowres_protocol, read_faces
    from faceops.eval.verification import cosine_scores, kfold_accuracy
    from faceops.io.shards import split_urls

    images, metas, keys = read_faces(split_urls(group_shards / "blobs", "train"))
    metrics, rows = lowres_protocol(_MeanColour(), images, metas, keys, resolutions=[7, 14, 112], n_pairs=40, folds=4,
                                    seed=0, batch_size=8)  # fmt: skip
    ids = [m["identity"] for m in metas]
    a, b, same = verification_pairs(ids, [None] * len(ids), n_pairs=40, seed=0)
    full = embed_faces(_MeanColour(), images, batch_size=8)
    assert metrics["lowres/112/verif/acc"] == kfold_accuracy(cosine_scores(full, a, b), same, folds=4)[0]
    assert metrics["lowres/gallery"] == 4 and metrics["lowres/probes"] == len(ids) - 4
    assert abs(metrics["lowres/7/verif/acc"] - metrics["lowres/112/verif/acc"]) <= 0.05
    assert metrics["lowres/7/rank1"] == metrics["lowres/112/rank1"] == 1.0  # colours tell the identities apart
    assert [r["resolution"] for r in rows] == [7, 14, 112] and rows[0]["sr_verif_acc"] is rows[0]["sr_rank1"] is None


def test_evaluate_stage_reports_lowres_with_and_without_super_resolution(group_shards, tmp_path):
    import json

    from faceops.io.checkpoint import save_checkpoint
    from faceops.models import create_model
    from faceops.sr.record import sr_record
    from faceops.train import model_record
    from stages import evaluate

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "model" / "model.pt", model_record(create_model("swinface_cpu_rec"), "swinface_cpu_rec",
                    {}, identities=[], step=0, params={}, init="scratch"), kind="model")  # fmt: skip
    sr_args = {"channels": 8, "skip_init": "bicubic"}
    save_checkpoint(tmp_path / "sr" / "model.pt", sr_record(create_model("fiwhn_x4", **sr_args), "fiwhn_x4", sr_args,
                    step=0, params={}, init="scratch"), kind="model")  # fmt: skip
    params = {"evaluate": {"sources": ["blobs"], "split": "train", "n_pairs": 40, "folds": 4,
                           "lowres": {"resolutions": [14, 56, 112], "super_resolve": True}}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    (tmp_path / "verification").mkdir()
    common = ["--params", str(tmp_path / "params.yaml"), "--model", str(tmp_path / "model"), "--shards",
              str(group_shards), "--verification", str(tmp_path / "verification"), "--metrics",
              str(tmp_path / "evaluate.json"), "--plots", str(tmp_path / "plots")]  # fmt: skip
    with pytest.raises(SystemExit, match="--sr"):
        evaluate.main(common)
    evaluate.main([*common, "--sr", str(tmp_path / "sr")])
    metrics = json.loads((tmp_path / "evaluate.json").read_text())
    for r in (14, 56, 112):
        assert {f"blobs/lowres/{r}/{k}" for k in ("verif/acc", "rank1", "sr/verif/acc", "sr/rank1")} <= set(metrics)
    assert metrics["blobs/lowres/112/sr/verif/acc"] == metrics["blobs/lowres/112/verif/acc"]  # nothing to restore
    rows = json.loads((tmp_path / "plots" / "blobs_lowres.json").read_text())
    assert [r["resolution"] for r in rows] == [14, 56, 112] and "sr_rank1" in rows[0]
