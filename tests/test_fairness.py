"""GABN (faceops.fairness): attention maps, double backprop into the backbone, Top-N erasing, the terms in fit."""

from __future__ import annotations

import math

import pytest
import torch

from faceops.config.gabn import GabnParams
from faceops.fairness import (
    AttentionAdversaryTerm, AttentionErasingTerm, FeatureTap, attention_maps, erase_cells, gabn_terms,
    gradient_attention, shard_groups, top_n_cells,
)  # fmt: skip
from faceops.io.shards import split_urls
from faceops.losses import MarginSoftmax, SwinFaceLoss
from faceops.models import create_model
from faceops.train import build_training, fit, normalize_images
from faceops.train.mixing import Batch
from faceops.train.terms import TermInputs
from group_shards import write_group_source

SMALL = {"embed_dim": 12, "num_heads": (1, 1, 2, 2), "embedding_size": 16}  # a cheap swinface_cpu_rec


def test_attention_maps_are_non_negative_max_normalised_and_shaped_like_the_grid():
    torch.manual_seed(0)
    fmap = torch.randn(5, 8, 7, 7, requires_grad=True)
    weights = torch.randn(8, 7, 7)
    score = (fmap * weights).sum(dim=(1, 2, 3)).tanh().sum()
    maps = gradient_attention(score, fmap)
    assert maps.shape == (5, 7, 7) and bool((maps >= 0).all())
    peaks = maps.flatten(1).amax(dim=1)
    assert all(p == 1.0 or p == 0.0 for p in peaks.tolist()) and bool((peaks == 1.0).any())


def test_attention_is_zero_when_the_score_ignores_the_features():
    fmap = torch.randn(3, 4, 7, 7, requires_grad=True)
    other = torch.randn(3, requires_grad=True)
    assert torch.equal(gradient_attention(other.sum(), fmap), torch.zeros(3, 7, 7))
    constant_in_fmap = (fmap.detach() * 2).sum() + other.sum()
    assert torch.equal(gradient_attention(constant_in_fmap, fmap), torch.zeros(3, 7, 7))


def test_top_n_cells_marks_exactly_n_cells_and_breaks_ties_by_position():
    maps = torch.rand(4, 7, 7)
    mask = top_n_cells(maps, 3)
    assert mask.shape == (4, 7, 7) and mask.flatten(1).sum(dim=1).tolist() == [3, 3, 3, 3]
    for m, chosen in zip(maps, mask, strict=True):
        assert m[chosen].min() >= m[~chosen].max()
    tied = top_n_cells(torch.ones(1, 7, 7), 2)
    assert tied.flatten().nonzero().squeeze(1).tolist() == [0, 1]
    with pytest.raises(ValueError, match="1 <= N <= 49"):
        top_n_cells(maps, 50)


def test_erasing_sets_exactly_the_chosen_cells_and_leaves_every_other_pixel():
    images = torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8)
    images[images == 77] = 78  # so that no untouched pixel equals the fill by chance
    cells = top_n_cells(torch.rand(2, 7, 7), 2)
    erased = erase_cells(images, cells, fill=77)
    changed = erased != images  # [2, 3, 112, 112]
    per_cell = changed.any(dim=1).view(2, 7, 16, 7, 16).permute(0, 1, 3, 2, 4).reshape(2, 7, 7, 256)
    assert torch.equal(per_cell.all(dim=-1), cells) and not bool(per_cell[~cells].any())
    region = cells.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, None].expand_as(images)
    assert bool((erased[region] == 77).all())
    assert torch.equal(erased[~changed], images[~changed])


def _step_inputs(model, margin, images, keys, identities, progress=0.5):
    """One step's TermInputs as fit builds them (no extra rows), with the task loss of a recognition model."""
    loss_fn = SwinFaceLoss(margin, heads=())
    outputs = model(normalize_images(images))
    targets, masks = {"identity": identities}, {"identity": torch.ones_like(identities, dtype=torch.bool)}
    batch = Batch(images, targets, masks, keys, ["s"] * len(keys))

    def task_loss(outs, tgts, msks):
        return loss_fn(outs, tgts, msks, progress=progress)

    return TermInputs(normalize_images(images), outputs, len(keys), slice(len(keys), len(keys)), targets, masks, batch,
                      progress, task_loss)  # fmt: skip


def test_the_adversarial_loss_reaches_the_backbone_by_double_backprop():
    """The recognition subnet shapes the map only through its gradient (alpha), so it gets a gradient from a loss
    on the map only when the map keeps the gradient's graph (double backprop); the trunk gets one either way."""
    torch.manual_seed(0)
    model = create_model("swinface_cpu_rec", **SMALL)
    margin = MarginSoftmax(4, model.num_features, s=16.0, m_cos=0.2)
    tap = FeatureTap(model.trunk, select=lambda taps: taps[-1])
    images = torch.randint(0, 256, (6, 3, 112, 112), dtype=torch.uint8)
    keys = [f"k{i}" for i in range(6)]
    identities = torch.tensor([0, 1, 2, 3, 0, 1])
    head, trunk = list(model.recognition.parameters()), list(model.trunk.parameters())

    def nonzero(grads):
        return any(g is not None and bool(g.abs().sum() > 0) for g in grads)

    term = AttentionAdversaryTerm(tap, {k: i % 2 for i, k in enumerate(keys)}, 2, model.trunk.final_grid, width=8)
    value = term(_step_inputs(model, margin, images, keys, identities))
    grads = torch.autograd.grad(value, head + trunk, allow_unused=True)
    assert nonzero(grads[: len(head)]) and nonzero(grads[len(head) :])
    detached = attention_maps(_step_inputs(model, margin, images, keys, identities), tap, create_graph=False)
    grads = torch.autograd.grad(detached.square().sum(), head + trunk, allow_unused=True)
    assert not nonzero(grads[: len(head)]) and nonzero(grads[len(head) :])


def test_the_discriminator_is_scored_on_faces_with_a_known_group_and_descends_its_loss():
    torch.manual_seed(1)
    model = create_model("swinface_cpu_rec", **SMALL)
    tap = FeatureTap(model.trunk, select=lambda taps: taps[-1])
    images = torch.randint(0, 256, (4, 3, 112, 112), dtype=torch.uint8)
    term = AttentionAdversaryTerm(tap, {"a": 0, "b": 1, "c": 0}, 2, 7, width=8)  # "d": no group, not scored
    inputs = _step_inputs(model, MarginSoftmax(2, 16, s=16.0), images, ["a", "b", "c", "d"], torch.tensor([0, 1, 0, 1]))
    value = term(inputs)
    maps = attention_maps(inputs, tap, create_graph=False).detach()
    expected = torch.nn.functional.cross_entropy(term.discriminator(maps[:3].flatten(1)), torch.tensor([0, 1, 0]))
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    last = term.discriminator[-1]
    (plain,) = torch.autograd.grad(expected, last.bias)
    (through_term,) = torch.autograd.grad(value, last.bias)
    assert torch.allclose(through_term, plain, atol=1e-6) and plain.abs().sum() > 0  # not reversed for D itself


def _gabn_run(shards, steps, cfg, *, resume=None, save=None, hooks=()):
    urls = {"blobs": split_urls(shards, "train")}
    made = []

    def make(model):
        made.extend(gabn_terms(cfg, model, shard_groups(urls["blobs"]), seed=5))
        return made

    run = build_training(
        "swinface_cpu_rec", shard_urls=urls, shares={"blobs": 1.0}, batch_size=6, lr=2e-3, weight_decay=0.05,
        backbone_lr_scale=1.0, warmup_steps=1, steps=steps, final_lr_ratio=0.1, margin_scale=16.0, margin_cos=0.2,
        sample_rate=1.0, hflip=0.5, shuffle_buffer=8, num_workers=0, seed=0, model_args=SMALL, make_terms=make,
    )  # fmt: skip
    result = fit(run.model, run.loss_fn, run.optimizer, run.scheduler, run.batches, steps=steps, seed=3,
                 terms=run.terms, resume=resume, save=save, checkpoint_every=2 if save else 0, hooks=hooks)  # fmt: skip
    return run, made, result


@pytest.fixture(scope="module")
def group_shards(tmp_path_factory):
    return write_group_source(tmp_path_factory.mktemp("groups"), per_group=2, per_identity=4)


def test_gabn_terms_train_in_fit_and_erased_copies_join_the_next_step(group_shards):
    cfg = GabnParams(enabled=True, adversarial_warmup=0.0, adversarial_full=0.0, erase_warmup=0.25,
                     erase_probability=1.0, erase_top_n=3)  # fmt: skip
    seen = []
    _, (adversary, erasing), result = _gabn_run(group_shards, 4, cfg, hooks=[lambda info: seen.append(info)])
    entries = [entry for _, entry in result.history]
    assert all(math.isfinite(e["loss/gabn_adv"]) and math.isfinite(e["loss/gabn_erase"]) for e in entries)
    # warm-up: step 1 (progress 0) makes no copy; step 2 makes the first; step 3 trains on them (6 labelled faces)
    assert [e["loss/gabn_erase"] for e in entries][:2] == [0.0, 0.0] and entries[2]["loss/gabn_erase"] > 0
    assert erasing._pending["images"].shape == (6, 3, 112, 112)
    assert isinstance(adversary, AttentionAdversaryTerm) and isinstance(erasing, AttentionErasingTerm)


def test_a_gabn_run_resumes_to_identical_weights(group_shards, tmp_path):
    from faceops.io.checkpoint import load_checkpoint, save_checkpoint

    cfg = GabnParams(enabled=True, adversarial_warmup=0.0, adversarial_full=0.5, erase_warmup=0.0,
                     erase_probability=0.5)  # fmt: skip
    path = tmp_path / "last.pt"
    run_a, _, result_a = _gabn_run(group_shards, 4, cfg)

    def kill(info):
        if info.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _gabn_run(group_shards, 4, cfg, save=lambda state: save_checkpoint(path, state, kind="resume"), hooks=[kill])
    run_b, _, result_b = _gabn_run(group_shards, 4, cfg, resume=load_checkpoint(path, kind="resume"))
    for name, tensor in run_a.model.state_dict().items():
        assert torch.equal(tensor, run_b.model.state_dict()[name]), name
    assert result_a.history == result_b.history


def test_gabn_refuses_one_group_and_models_without_feature_maps():
    model = create_model("swinface_cpu_rec", **SMALL)
    with pytest.raises(ValueError, match="at least 2"):
        gabn_terms(GabnParams(enabled=True), model, {"a": "g0", "b": "g0", "c": None}, seed=0)
    with pytest.raises(ValueError, match="SwinFace trunk"):
        gabn_terms(GabnParams(enabled=True), torch.nn.Linear(2, 2), {"a": "g0", "b": "g1"}, seed=0)
    with pytest.raises(ValueError, match="adversarial_full"):
        GabnParams(adversarial_warmup=0.5, adversarial_full=0.2)


def test_train_gabn_params_add_both_terms_to_the_training_job(group_shards, tmp_path):
    from faceops.config.train import TrainParams
    from faceops.train import DistInfo
    from faceops.train.job import run_training

    cfg = TrainParams(sources=[{"name": "blobs"}], steps=2, warmup_steps=0, batch_size=6, checkpoint_every=10,
                      gabn={"enabled": True, "adversarial_warmup": 0.0, "adversarial_full": 0.0})  # fmt: skip
    trained = run_training(cfg, seed=0, shard_urls={"blobs": split_urls(group_shards, "train")},
                           resume_file=tmp_path / "last.pt", dist=DistInfo(0, 1, 0, torch.device("cpu")))  # fmt: skip
    assert math.isfinite(trained.metrics["loss/gabn_adv"]) and "loss/gabn_erase" in trained.metrics
    assert trained.record["params"]["gabn"]["enabled"] is True
