"""Universal adversarial perturbations: SGA (stochastic gradient aggregation) and its special case SPGD.

Paper: Xuannan Liu, Yaoyao Zhong, Yuhang Zhang, Lixiong Qin, Weihong Deng, "Enhancing Generalization of
Universal Adversarial Perturbation through Gradient Aggregation", ICCV 2023, arXiv 2308.06015. Only the
abstract was readable; the algorithm below follows the authors' released code (github
liuxuannan/Stochastic-Gradient-Aggregation, read at commit b326bea), written here in our own words.

One perturbation ``delta`` in image space ([0, 1] pixels, L-inf budget ``eps``) is learnt against a frozen
classifier, with the classifier's own clean predictions as targets (untargeted, label-free). The loss
on a set S is the mean over S of min(CE(f(clip(x + delta)), y_hat(x)), beta) and is *ascended*.
Per outer step on a batch of B images: from a copy of delta, ``inner_iters * B / minibatch_size`` inner
sign steps each take the gradient on ``minibatch_size`` images drawn without replacement; the inner
gradients are aggregated (mean, or sum: same sign), optionally through momentum
(v <- mu v + G / ||G||_1), and one outer sign step of size ``alpha = eps * step_decay`` is taken on the
aggregate; the inner copy is discarded. SPGD (stochastic projected gradient descent, the paper's
baseline) is one step on the whole batch's gradient. Every step is clipped to [-eps, eps].
Ours: the drawn indices are sorted (the set is what matters), so one inner step over the whole batch is
SPGD bit for bit; images stay uint8 until a batch is used, so full-size sets fit in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["Classifier", "UAPConfig", "clamped_cross_entropy", "uap_gradient", "spgd_step", "sga_step", "train_uap",
           "predict_labels", "fooling_rate", "random_sign_perturbation"]  # fmt: skip

#: A frozen classifier: images in [0, 1] [B, 3, H, W] float -> logits [B, C].
Classifier = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class UAPConfig:
    """SGA's hyper-parameters; the defaults are the released code's ImageNet settings.

    Attributes:
        eps: L-inf budget in [0, 1] pixel units (10/255).
        step_decay: step size as a fraction of ``eps`` (a constant, not a schedule, despite its name).
        batch_size: images per outer step B.
        minibatch_size: images per inner step b.
        inner_iters: K; an outer step takes ``K * B / b`` inner steps (100 by default).
        epochs: passes over the attack images.
        beta: the cross-entropy clamp.
        momentum: mu of the optional momentum on the aggregate (0 = off; the code's option uses 0.9).
        aggregate: ``"mean"`` or ``"sum"`` of the inner gradients (the sign step sees the same sign).
    """

    eps: float = 10 / 255
    step_decay: float = 0.1
    batch_size: int = 250
    minibatch_size: int = 10
    inner_iters: int = 4
    epochs: int = 20
    beta: float = 9.0
    momentum: float = 0.0
    aggregate: Literal["mean", "sum"] = "mean"

    def __post_init__(self) -> None:
        if not 0.0 < self.eps <= 1.0 or not 0.0 < self.step_decay <= 1.0:
            raise ValueError(f"need 0 < eps <= 1 and 0 < step_decay <= 1, got eps={self.eps}, "
                             f"step_decay={self.step_decay}")  # fmt: skip
        if min(self.batch_size, self.minibatch_size, self.inner_iters, self.epochs) < 1 or self.beta <= 0:
            raise ValueError(f"batch_size, minibatch_size, inner_iters, epochs must be >= 1 and beta > 0: {self}")
        if not 0.0 <= self.momentum < 1.0 or self.aggregate not in ("mean", "sum"):
            raise ValueError(f"need 0 <= momentum < 1 and aggregate 'mean' or 'sum', got {self.momentum}, "
                             f"{self.aggregate!r}")  # fmt: skip

    @property
    def alpha(self) -> float:
        return self.eps * self.step_decay

    def inner_steps(self, batch: int) -> int:
        """``K * B / b`` inner steps for a batch of ``batch`` images (at least one)."""
        return max(1, round(self.inner_iters * batch / self.minibatch_size))


def _unit(images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float32 [0, 1] on ``device``."""
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 [N, 3, H, W], got {images.dtype}")
    return images.to(device).float().div_(255.0)


def clamped_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, beta: float) -> torch.Tensor:
    """min(CE(logits, targets), beta) per sample [B]: one image's loss cannot dominate the ascent."""
    return F.cross_entropy(logits, targets, reduction="none").clamp(max=beta)


def uap_gradient(
    classifier: Classifier, images: torch.Tensor, targets: torch.Tensor, delta: torch.Tensor, beta: float
) -> torch.Tensor:
    """Gradient [3, H, W] of the mean clamped CE over ``images`` (uint8) w.r.t. ``delta``."""
    x = _unit(images, delta.device)
    d = delta.detach().requires_grad_(True)
    loss = clamped_cross_entropy(classifier((x + d).clamp(0.0, 1.0)), targets.to(delta.device), beta).mean()
    (grad,) = torch.autograd.grad(loss, d)
    return grad


def _sign_step(delta: torch.Tensor, grad: torch.Tensor, cfg: UAPConfig) -> torch.Tensor:
    return (delta + cfg.alpha * grad.sign()).clamp(-cfg.eps, cfg.eps)


def spgd_step(
    classifier: Classifier, images: torch.Tensor, targets: torch.Tensor, delta: torch.Tensor, cfg: UAPConfig
) -> torch.Tensor:
    """One SPGD step: a sign step on the gradient of the whole batch, clipped to the budget."""
    return _sign_step(delta, uap_gradient(classifier, images, targets, delta, cfg.beta), cfg)


def sga_step(
    classifier: Classifier, images: torch.Tensor, targets: torch.Tensor, delta: torch.Tensor, cfg: UAPConfig, *,
    generator: torch.Generator, velocity: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """One SGA outer step on a batch: inner pre-search, aggregation, one sign step on the aggregate.

    Args:
        classifier: the frozen model.
        images: the batch, uint8 [B, 3, H, W]; targets: its clean predictions [B].
        delta: the current perturbation [3, H, W].
        cfg: step sizes and counts.
        generator: draws the inner minibatches (CPU generator).
        velocity: the momentum state from the previous outer step (None at the start).

    Returns:
        ``(delta, aggregate, velocity)``: the new perturbation, the aggregated gradient it stepped on,
        and the momentum state (None when momentum is off).
    """
    inner, grads = delta.clone(), []
    b = min(cfg.minibatch_size, len(images))
    for _ in range(cfg.inner_steps(len(images))):
        index = torch.randperm(len(images), generator=generator)[:b].sort().values
        grad = uap_gradient(classifier, images[index], targets[index], inner, cfg.beta)
        inner = _sign_step(inner, grad, cfg)
        grads.append(grad)
    stacked = torch.stack(grads)
    aggregate = stacked.mean(dim=0) if cfg.aggregate == "mean" else stacked.sum(dim=0)
    if cfg.momentum > 0.0:
        scaled = aggregate / aggregate.abs().sum().clamp_min(1e-12)
        velocity = scaled if velocity is None else cfg.momentum * velocity + scaled
        aggregate = velocity
    return _sign_step(delta, aggregate, cfg), aggregate, velocity


@torch.no_grad()
def predict_labels(
    classifier: Classifier, images: torch.Tensor, delta: torch.Tensor | None = None, *, batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:  # fmt: skip
    """argmax predictions [N] (CPU, int64) of uint8 images [N, 3, H, W], perturbed by ``delta`` when given."""
    out = []
    for start in range(0, len(images), batch_size):
        x = _unit(images[start : start + batch_size], device)
        if delta is not None:
            x = (x + delta.to(device)).clamp(0.0, 1.0)
        out.append(classifier(x).argmax(dim=1).cpu())
    if not out:
        raise ValueError("predict_labels got no images")
    return torch.cat(out)


def fooling_rate(
    classifier: Classifier, images: torch.Tensor, delta: torch.Tensor, *, clean: torch.Tensor | None = None,
    batch_size: int = 64, device: torch.device | str = "cpu",
) -> float:  # fmt: skip
    """Share of images whose top-1 prediction changes when ``delta`` is added (``clean``: known clean labels)."""
    if clean is None:
        clean = predict_labels(classifier, images, batch_size=batch_size, device=device)
    return float(
        (predict_labels(classifier, images, delta, batch_size=batch_size, device=device) != clean).float().mean()
    )


def random_sign_perturbation(shape: tuple[int, ...], eps: float, *, seed: int) -> torch.Tensor:
    """Random +-eps in every pixel (the budget's baseline), from a seeded CPU generator."""
    signs = torch.randint(0, 2, shape, generator=torch.Generator().manual_seed(seed)).float() * 2.0 - 1.0
    return signs * eps


def train_uap(
    classifier: Classifier, images: torch.Tensor, cfg: UAPConfig, *, method: Literal["sga", "spgd"] = "sga",
    seed: int = 0, device: torch.device | str = "cpu", on_epoch: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:  # fmt: skip
    """Learn a universal perturbation [3, H, W] (on ``device``) over uint8 attack images [N, 3, H, W].

    delta starts at zero; each epoch visits the images in a seeded order, ``cfg.batch_size`` at a time;
    ``on_epoch(epoch, delta)`` is called after each epoch (1-based).

    Raises:
        ValueError: unknown method or no images.
    """
    if method not in ("sga", "spgd"):
        raise ValueError(f"unknown UAP method {method!r}; expected 'sga' or 'spgd'")
    if len(images) == 0:
        raise ValueError("train_uap got no attack images")
    targets = predict_labels(classifier, images, batch_size=cfg.batch_size, device=device)
    delta = torch.zeros(images.shape[1:], device=device)
    generator = torch.Generator().manual_seed(seed)
    velocity = None
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), cfg.batch_size):
            index = order[start : start + cfg.batch_size].sort().values
            if method == "spgd":
                delta = spgd_step(classifier, images[index], targets[index], delta, cfg)
            else:
                delta, _, velocity = sga_step(classifier, images[index], targets[index], delta, cfg,
                                              generator=generator, velocity=velocity)  # fmt: skip
        if on_epoch is not None:
            on_epoch(epoch, delta)
    return delta
