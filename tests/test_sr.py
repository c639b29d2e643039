"""faceops.sr: PSNR/SSIM-Y, the patch-pair stream, training through fit (exact resume), scoring, the `sr` stage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceops.io.checkpoint import load_checkpoint
from faceops.io.shards import ShardSample, write_index, write_shards
from faceops.models import create_model
from faceops.sr.degrade import resize_bicubic
from faceops.sr.quality import MAX_PSNR, psnr_y, rgb_to_y, ssim_y
from faceops.sr.record import load_sr_model
from faceops.sr.train import PatchPairs, evaluate_sr, train_sr

TINY = {"channels": 8}


def _smooth_images(n: int, size: int = 48, seed: int = 0) -> list[torch.Tensor]:
    """Blurred random colour fields, uint8 [3, size, size] each."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (size // 6, size // 6, 3)).astype(np.float32)
        image = cv2.GaussianBlur(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), (0, 0), 1.0)
        out.append(torch.from_numpy(np.clip(image, 0, 255).astype(np.uint8)).permute(2, 0, 1).contiguous())
    return out


# ---- quality ----------------------------------------------------------------------------------------


def test_psnr_y_of_a_constant_offset_is_the_closed_form():
    """Every channel off by d: the luma is off by d * (65.738 + 129.057 + 25.064) / 256."""
    hr = torch.from_numpy(np.random.default_rng(0).integers(20, 200, (2, 3, 24, 24))).float()
    psnr = psnr_y(hr + 6.0, hr, shave=2)
    expected = 20 * math.log10(255 / (6.0 * (65.738 + 129.057 + 25.064) / 256))
    torch.testing.assert_close(psnr, torch.full((2,), expected, dtype=torch.float64))
    assert (psnr_y(hr, hr, shave=2) == MAX_PSNR).all()


def test_shaving_ignores_the_border():
    hr = torch.full((1, 3, 20, 20), 100.0)
    sr = hr.clone()
    sr[..., :3, :] = 0.0  # a wrong border strip
    assert psnr_y(sr, hr, shave=3) == MAX_PSNR and psnr_y(sr, hr, shave=2) < 30
    with pytest.raises(ValueError, match="shaving"):
        psnr_y(sr, hr, shave=10)


def test_ssim_y_is_one_on_equal_images_symmetric_and_falls_with_noise():
    hr = torch.stack(_smooth_images(2)).float()
    g = torch.Generator().manual_seed(0)
    light, heavy = (hr + torch.randn(hr.shape, generator=g) * sigma for sigma in (3.0, 20.0))
    torch.testing.assert_close(ssim_y(hr, hr, shave=2), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(ssim_y(light, hr, shave=2), ssim_y(hr, light, shave=2))
    assert (ssim_y(heavy, hr, shave=2) < ssim_y(light, hr, shave=2)).all() and (ssim_y(light, hr, shave=2) < 1).all()
    assert rgb_to_y(torch.zeros(1, 3, 2, 2)).eq(16).all() and rgb_to_y(torch.full((1, 3, 2, 2), 255.0)).max() < 236


# ---- patches, training ----------------------------------------------------------------------------------


def test_patch_pairs_are_aligned_lr_hr_crops_and_resume_exactly():
    images = _smooth_images(3)
    stream = PatchPairs(images, scale=4, patch=6, batch_size=5, seed=1, augment=False)
    batch = next(stream)
    assert batch.images.shape == (5, 3, 6, 6) and batch.images.dtype == torch.uint8
    hr = batch.targets["hr"]
    assert hr.shape == (5, 3, 24, 24)
    torch.testing.assert_close(resize_bicubic(hr, 6), batch.images.float(), atol=40, rtol=0)  # same content
    state = stream.state_dict()
    following = next(stream)
    again = PatchPairs(images, scale=4, patch=6, batch_size=5, seed=99, augment=False)
    again.load_state_dict(state)
    assert torch.equal(next(again).images, following.images)
    with pytest.raises(ValueError, match="smaller than one 64x64 HR patch"):
        PatchPairs(images, scale=4, patch=16, batch_size=2, seed=0)


def test_training_lowers_the_l1_loss_and_resumes_to_identical_weights(tmp_path):
    images = _smooth_images(6)
    kwargs = dict(patch=6, batch_size=4, steps=6, lr=2e-3, eta_min=1e-6, seed=0, log_every=1)
    torch.manual_seed(0)
    net = create_model("fiwhn_x2", **TINY)  # PyTorch's initialisation: a loss far from its minimum
    result = train_sr(net, images, **kwargs)
    losses = [entry["loss/SR"] for _, entry in result.history]
    assert result.step == 6 and len(losses) == 6 and min(losses[3:]) < losses[0]

    resume = tmp_path / "last.pt"
    torch.manual_seed(0)
    with pytest.raises(_Killed):
        train_sr(create_model("fiwhn_x2", **TINY), images, **kwargs, resume_file=resume,
                 checkpoint_every=3, progress=_kill_after(3))  # fmt: skip
    resumed = create_model("fiwhn_x2", **TINY, skip_init="bicubic")  # other weights: the checkpoint's must win
    train_sr(resumed, images, **kwargs, resume_file=resume, checkpoint_every=3)
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


class _Killed(Exception):
    """Stands for a killed process."""


def _kill_after(steps: int):
    """A progress callback that raises once ``steps`` steps are done (after that step's checkpoint)."""
    done = {"n": 0}

    def progress(n: int) -> None:
        done["n"] += n
        if done["n"] == steps:
            raise _Killed

    return progress


def test_evaluation_compares_with_bicubic_and_counts_images():
    net = create_model("fiwhn_x3", **TINY, skip_init="bicubic")
    scores = evaluate_sr(net, [*_smooth_images(2, size=48), *_smooth_images(1, size=40)])
    assert scores["images"] == 3
    assert scores["gain/psnr_y"] == pytest.approx(scores["sr/psnr_y"] - scores["bicubic/psnr_y"])
    assert 20 < scores["bicubic/psnr_y"] < MAX_PSNR and 0 < scores["sr/ssim_y"] <= 1


# ---- the stage ---------------------------------------------------------------------------------------


def _write_faces(root, n_train=6, n_test=3):
    samples = {"train": [], "test": []}
    for split, count in (("train", n_train), ("test", n_test)):
        for i, image in enumerate(_smooth_images(count, size=48, seed=len(split))):
            jpg = cv2.imencode(".jpg", image.permute(1, 2, 0).numpy()[..., ::-1].copy())[1].tobytes()
            key = f"s_{split}_{i:03d}"
            samples[split].append(ShardSample(key, jpg, {"id": key, "source": "s", "identity": f"p{i}"}))
    index = {"format": 1, "source": "s", "samples": n_train + n_test, "splits": {}}
    for split, rows in samples.items():
        infos = write_shards(rows, root / "s", split=split, maxcount=4)
        index["splits"][split] = {"shards": [i.name for i in infos], "samples": len(rows), "identities": len(rows)}
    write_index(root / "s", index)


@pytest.mark.parametrize("steps", [3, 0])
def test_sr_stage_writes_model_metrics_and_grid(tmp_path, steps):
    from stages import sr

    _write_faces(tmp_path / "shards")
    params = {"sr": {"model": "fiwhn_x4", "channels": 8, "skip_init": "bicubic", "source": "s", "steps": steps,
                     "batch_size": 2, "patch": 8, "grid_images": 2, "log_every": 1}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    (tmp_path / "imported").mkdir()
    sr.main(["--params", str(tmp_path / "params.yaml"), "--shards", str(tmp_path / "shards"), "--raw",
             str(tmp_path / "raw"), "--imported", str(tmp_path / "imported"), "--out", str(tmp_path / "out"),
             "--ckpt", str(tmp_path / "ckpt"), "--metrics", str(tmp_path / "sr.json"), "--plots",
             str(tmp_path / "plots")])  # fmt: skip
    metrics = json.loads((tmp_path / "sr.json").read_text())
    assert metrics["steps"] == steps and metrics["images"] == 3 and "sr/psnr_y" in metrics and "bicubic/ssim_y" in metrics
    model, record = load_sr_model(tmp_path / "out" / "model.pt")
    assert record["scale"] == 4 and record["model_args"] == {"channels": 8, "skip_init": "bicubic"}
    grid = cv2.imread(str(tmp_path / "plots" / "grid.png"))
    assert grid.shape == (2 * 48 + 2, 4 * 48 + 6, 3)
    with pytest.raises(ValueError, match="not a super-resolution"):
        torch.save({"format": 1, "kind": "model", "model_name": "swinface_cpu"}, tmp_path / "rec.pt")
        load_sr_model(tmp_path / "rec.pt")
    assert load_checkpoint(tmp_path / "out" / "model.pt", kind="model")["step"] == steps


def test_sr_stage_scores_an_imported_model_on_a_raw_image_folder(tmp_path):
    """``sr.data: raw`` reads a registered image folder, ``sr.init: imported:...@<sha>`` starts from the weights
    `faceops import-weights fiwhn` wrote (pinned by hash); with ``steps: 0`` the stage only scores them."""
    from faceops.io.checkpoint import save_checkpoint
    from faceops.io.digest import sha256_file
    from faceops.models.importers import import_weights
    from stages import sr

    folder = tmp_path / "raw" / "lab"
    for i, image in enumerate(_smooth_images(12, size=48, seed=5)):
        (folder / f"p{i % 3}").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"p{i % 3}" / f"{i:02d}.png"), image.permute(1, 2, 0).numpy()[..., ::-1].copy())
    official = json.loads((Path(__file__).parent / "fixtures" / "fiwhn_official_x4.json").read_text())["tensors"]
    torch.manual_seed(0)
    torch.save({name: 0.01 * torch.randn(shape) for name, shape in official.items()}, tmp_path / "model_best_x4.pt")
    imported = tmp_path / "imported" / "fiwhn_x4.pt"
    imported.parent.mkdir()
    save_checkpoint(imported, import_weights("fiwhn", tmp_path / "model_best_x4.pt"), kind="model")
    pin = f"imported:fiwhn_x4@{sha256_file(imported)[:12]}"
    params = {"sr": {"model": "fiwhn_x4", "data": "raw", "source": "lab", "heldout_fraction": 0.3, "init": pin,
                     "steps": 0, "grid_images": 2}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    args = ["--params", str(tmp_path / "params.yaml"), "--shards", str(tmp_path / "shards"), "--raw",
            str(tmp_path / "raw"), "--imported", str(imported.parent), "--out", str(tmp_path / "out"), "--ckpt",
            str(tmp_path / "ckpt"), "--metrics", str(tmp_path / "sr.json"), "--plots", str(tmp_path / "plots")]
    sr.main(args)
    metrics = json.loads((tmp_path / "sr.json").read_text())
    assert metrics["steps"] == 0 and 1 <= metrics["images"] < 12  # the held-out share of the 12 images
    _, record = load_sr_model(tmp_path / "out" / "model.pt")
    state = import_weights("fiwhn", tmp_path / "model_best_x4.pt")["state_dict"]
    assert all(torch.equal(record["state_dict"][k], v) for k, v in state.items())  # scored as imported
    imported.write_bytes(imported.read_bytes() + b"\0")  # other bytes than the pin names
    with pytest.raises(SystemExit, match="sha256"):
        sr.main(args)
