"""faceops.robust: the L-inf budget, SPGD as SGA's one-step case bit for bit, aggregation, the fooling rate, the
classifiers built from our models and timm's, and SGA's effect on a small trained CNN."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from faceops.models import create_model
from faceops.robust import (
    IDENTITY,
    OutputClassifier,
    UAPConfig,
    clamped_cross_entropy,
    compare_attacks,
    fooling_rate,
    model_classifiers,
    predict_labels,
    sga_step,
    spgd_step,
    train_uap,
)  # fmt: skip
from faceops.robust.study import perturbation_image

CFG = UAPConfig(eps=8 / 255, step_decay=0.25, batch_size=8, minibatch_size=4, inner_iters=2, epochs=2)


class _Linear(torch.nn.Module):
    """A deterministic linear classifier over 3x8x8 images (no randomness, exact gradients)."""

    def __init__(self, classes: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(classes, 3 * 8 * 8, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - 0.5) @ self.weight.T


def _images(n: int = 8, side: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, side, side), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_clamped_cross_entropy_never_exceeds_beta():
    logits = torch.randn(64, 10) * 100
    loss = clamped_cross_entropy(logits, torch.randint(0, 10, (64,)), beta=9.0)
    assert loss.max() <= 9.0 and (loss == 9.0).any() and (loss < 9.0).any()


def test_the_budget_holds_after_every_inner_and_outer_step(monkeypatch):
    import faceops.robust.uap as uap

    model, images = _Linear(), _images(16)
    seen = []
    original = uap._sign_step

    def watched(delta, grad, cfg):
        out = original(delta, grad, cfg)
        seen.append(float(out.abs().max()))
        return out

    monkeypatch.setattr(uap, "_sign_step", watched)
    epochs = []
    for method in ("sga", "spgd"):
        train_uap(model, images, replace(CFG, epochs=3), method=method, seed=1,
                  on_epoch=lambda e, d: epochs.append(float(d.abs().max())))  # fmt: skip
    assert len(seen) == 3 * 2 * (CFG.inner_steps(8) + 1) + 3 * 2  # SGA: inner + outer; SPGD: one per batch
    assert max(seen) <= CFG.eps + 1e-7 and max(epochs) <= CFG.eps + 1e-7 and max(epochs) > 0


def test_one_inner_step_over_the_whole_batch_is_one_spgd_step_bit_for_bit():
    model, images = _Linear(), _images(8)
    targets = predict_labels(model, images)
    delta = (torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1) * CFG.eps
    one_step = replace(CFG, minibatch_size=8, inner_iters=1)  # K * B / b = 1 step on all 8 images
    sga, _, _ = sga_step(model, images, targets, delta, one_step, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sga, spgd_step(model, images, targets, delta, one_step))


def test_mean_and_sum_aggregation_give_the_same_sign_and_step():
    model, images = _Linear(), _images(8)
    targets = predict_labels(model, images)
    delta = torch.zeros(3, 8, 8)
    out = {agg: sga_step(model, images, targets, delta, replace(CFG, aggregate=agg),
                         generator=torch.Generator().manual_seed(5)) for agg in ("mean", "sum")}  # fmt: skip
    assert torch.equal(out["mean"][1].sign(), out["sum"][1].sign())
    assert torch.equal(out["mean"][0], out["sum"][0])


def test_momentum_keeps_a_normalised_velocity():
    model, images = _Linear(), _images(8)
    targets = predict_labels(model, images)
    cfg = replace(CFG, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    delta, aggregate, velocity = sga_step(model, images, targets, torch.zeros(3, 8, 8), cfg, generator=g)
    assert velocity.abs().sum() == pytest.approx(1.0, rel=1e-5) and torch.equal(aggregate, velocity)
    _, _, second = sga_step(model, images, targets, delta, cfg, generator=g, velocity=velocity)
    assert second.abs().sum() <= 1.9 + 1e-5  # 0.9 * 1 + 1


def test_fooling_rate_of_zero_is_zero_and_rates_are_shares():
    model, images = _Linear(), _images(32)
    assert fooling_rate(model, images, torch.zeros(3, 8, 8)) == 0.0
    rate = fooling_rate(model, images, torch.full((3, 8, 8), 0.3))
    assert 0.0 <= rate <= 1.0 and rate * 32 == round(rate * 32)


def test_perturbation_image_maps_the_budget_to_black_grey_white():
    eps = 0.1
    delta = np.stack([np.full((2, 2), -eps), np.zeros((2, 2)), np.full((2, 2), eps)])
    image = perturbation_image(delta, eps)
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == (0, 128, 255)


def test_classifiers_of_a_swinface_model_and_their_errors():
    torch.manual_seed(0)
    model = create_model("swinface_cpu").eval()
    images = _images(6, side=112)
    found = model_classifiers(model, ["Expression", IDENTITY], images, ["a", "a", "b", "b", "c", None])
    x = images.float() / 255
    assert found["Expression"](x).shape == (6, 7) and found[IDENTITY](x).shape == (6, 3)
    with pytest.raises(ValueError, match=r"unknown attack target 'Nose'.*'Expression'"):
        model_classifiers(model, ["Nose"], images, [None] * 6)
    with pytest.raises(ValueError, match=">= 2 labelled identities"):
        model_classifiers(model, [IDENTITY], images, ["a"] * 6)


def test_a_timm_model_with_its_own_normalisation_keeps_the_budget():
    net = create_model("timm/resnet18", num_classes=5)
    classifier = OutputClassifier(net, None, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    images = _images(8, side=32)
    delta = train_uap(classifier, images, replace(CFG, epochs=1), seed=0)
    assert delta.shape == (3, 32, 32) and float(delta.abs().max()) <= CFG.eps + 1e-7


@pytest.mark.slow
def test_sga_fools_a_trained_cnn_more_than_random_noise_of_the_same_budget():
    from faceops.ood.shifts import sample_faces
    from faceops.robust.surrogate import LOGITS, train_classifier

    pool = sample_faces(6, 24, seed=0, size=24)
    model = train_classifier(pool.images, pool.identity, steps=60, seed=0, batch_size=32)
    images = torch.from_numpy(np.ascontiguousarray(pool.images.transpose(0, 3, 1, 2)))
    assert (
        predict_labels(OutputClassifier(model, LOGITS), images) == torch.from_numpy(pool.identity)
    ).float().mean() > 0.5
    cfg = UAPConfig(eps=16 / 255, batch_size=24, minibatch_size=6, inner_iters=2, epochs=4)
    result = compare_attacks({"id": OutputClassifier(model, LOGITS)}, images, cfg, held_out_share=0.5, seed=0)
    m = result.metrics
    assert m["id/sga/fooling_rate"] > m["id/random/fooling_rate"], m
    assert len(result.curves["id"]) == 4 and m["id/held_out_images"] == 72
    assert all(m[f"id/{k}/linf"] <= cfg.eps + 1e-7 for k in ("sga", "spgd", "random"))
