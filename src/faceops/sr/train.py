"""Training and scoring a super-resolution network as FIWHN's code does, through the one training loop.

FIWHN (arXiv:2212.14181; official code github.com/24wenjie-li/FIWHN, ``trainer.py``, ``option.py``,
``data/common.py``): random LR patches with the matching HR patches (the HR image cut to a multiple of the
scale, its LR made once by the antialiased bicubic of ``faceops.sr.degrade``), random horizontal and vertical
flips and a 90-degree turn, L1 loss on [0, 255] pixels, Adam (0.9, 0.999, eps 1e-8, no weight decay), cosine
annealing to ``eta_min``. The steps run in ``faceops.train.loop.fit`` (resumable checkpoints, step log, exact
resume): :class:`PatchPairs` is its batch stream (LR patches as the batch's uint8 images, HR patches as the
``"hr"`` target) and :class:`PixelRange` undoes fit's [-1, 1] input normalisation for the network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from faceops.io.checkpoint import load_checkpoint, save_checkpoint
from faceops.sr.degrade import resize_bicubic
from faceops.sr.inference import super_resolve
from faceops.sr.quality import psnr_y, ssim_y
from faceops.train.batch import IMAGE_MEAN, IMAGE_STD
from faceops.train.loop import FitResult, fit
from faceops.train.mixing import Batch

__all__ = ["SR_OUTPUT", "PatchPairs", "PixelL1", "PixelRange", "crop_to_scale", "evaluate_sr", "train_sr"]

#: The output name of the adapted network in fit's outputs (logged as ``loss/SR``).
SR_OUTPUT = "SR"


def crop_to_scale(image: torch.Tensor, scale: int) -> torch.Tensor:
    """[3, H, W] cut at the bottom/right to the largest multiple of ``scale`` in each side."""
    return image[:, : image.shape[1] - image.shape[1] % scale, : image.shape[2] - image.shape[2] % scale]


class PatchPairs:
    """Endless, resumable stream of random (LR, HR) patch pairs as :class:`faceops.train.mixing.Batch`.

    Args:
        images: HR training images, uint8 [3, H, W] each (sizes may differ).
        scale: the upscaling factor s.
        patch: LR patch side p (HR patches are s*p).
        batch_size: pairs per batch.
        seed: seeds the stream's generator (image and position choice, flips, turns).
        augment: random horizontal flip, vertical flip and transpose (a 90-degree turn), each with p = 0.5.

    Raises:
        ValueError: an image smaller than one HR patch (naming it).
    """

    def __init__(self, images: Sequence[torch.Tensor], *, scale: int, patch: int, batch_size: int, seed: int,
                 augment: bool = True) -> None:  # fmt: skip
        side = scale * patch
        small = [i for i, image in enumerate(images) if min(image.shape[-2:]) < side]
        if small or not images:
            shape = tuple(images[small[0]].shape) if small else None
            raise ValueError(f"{len(small) if images else 'no'} training images smaller than one {side}x{side} HR "
                             f"patch (first: #{small[0] if small else '-'} of shape {shape}); lower sr.patch "
                             f"(LR side, x{scale})")  # fmt: skip
        self.hr = [crop_to_scale(image, scale) for image in images]
        self.lr = [resize_bicubic(image[None], (image.shape[1] // scale, image.shape[2] // scale))[0] for image in self.hr]
        self.scale, self.patch, self.batch_size, self.augment = scale, patch, batch_size, augment
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> PatchPairs:
        return self

    def __next__(self) -> Batch:
        g, p, s = self.generator, self.patch, self.scale
        lows, highs, keys = [], [], []
        for index in torch.randint(len(self.hr), (self.batch_size,), generator=g).tolist():
            lr = self.lr[index]
            top = int(torch.randint(lr.shape[1] - p + 1, (1,), generator=g))
            left = int(torch.randint(lr.shape[2] - p + 1, (1,), generator=g))
            low = lr[:, top : top + p, left : left + p]
            high = self.hr[index][:, s * top : s * (top + p), s * left : s * (left + p)]
            if self.augment:
                hflip, vflip, turn = (torch.rand(3, generator=g) < 0.5).tolist()
                low, high = (self._augment(x, hflip, vflip, turn) for x in (low, high))
            lows.append(low)
            highs.append(high)
            keys.append(f"{index}@{top},{left}")
        return Batch(torch.stack(lows), {"hr": torch.stack(highs).float()}, {}, keys, ["sr"] * len(keys))

    @staticmethod
    def _augment(x: torch.Tensor, hflip: bool, vflip: bool, turn: bool) -> torch.Tensor:
        x = x.flip(-1) if hflip else x
        x = x.flip(-2) if vflip else x
        return x.transpose(-1, -2) if turn else x

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())


class PixelRange(nn.Module):
    """fit feeds images normalised to [-1, 1]; this hands the network pixels in [0, rgb_range] and names its output."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pixels = (x * IMAGE_STD + IMAGE_MEAN) * float(self.net.rgb_range)
        return {SR_OUTPUT: self.net(pixels) * (255.0 / float(self.net.rgb_range))}


class PixelL1(nn.Module):
    """Mean absolute error on [0, 255] pixels between the network's output and the ``"hr"`` target (fit's loss)."""

    def forward(self, outputs, targets, masks, *, progress: float = 0.0):
        loss = (outputs[SR_OUTPUT].float() - targets["hr"]).abs().mean()
        return loss, {SR_OUTPUT: loss}


def train_sr(
    net: nn.Module, images: Sequence[torch.Tensor], *, patch: int, batch_size: int, steps: int, lr: float,
    eta_min: float, seed: int, augment: bool = True, device: str | torch.device = "cpu",
    log: Callable[[int, dict[str, float]], None] | None = None, log_every: int = 10, resume_file: Path | None = None,
    checkpoint_every: int = 0, about: Mapping[str, Any] | None = None, progress: Callable[[int], None] | None = None,
) -> FitResult:  # fmt: skip
    """Train ``net`` (FIWHN-style: ``scale``, ``rgb_range``) on random patch pairs of ``images`` for ``steps`` steps.

    Args:
        net: the network, on ``device``; trained in place.
        images: HR training images, uint8 [3, H, W] each.
        patch, batch_size, augment: the patch stream (:class:`PatchPairs`).
        steps, lr, eta_min: Adam steps and the cosine schedule from ``lr`` to ``eta_min``.
        seed: seeds the torch RNG at a fresh start and the patch stream.
        log, log_every: fit's step log (``loss/SR``, ``lr/0``).
        resume_file, checkpoint_every: continue from / write fit's resumable checkpoint (with ``about`` added).
        progress: called with 1 after each step.
    """
    if steps == 0:
        return FitResult(step=0)
    stream = PatchPairs(images, scale=net.scale, patch=patch, batch_size=batch_size, seed=seed, augment=augment)
    adapted = PixelRange(net).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=eta_min)
    resume = load_checkpoint(resume_file, kind="resume") if resume_file is not None and resume_file.is_file() else None
    save = None
    if resume_file is not None:
        save = lambda state: save_checkpoint(resume_file, {**state, **dict(about or {})}, kind="resume")
    return fit(adapted, PixelL1(), optimizer, scheduler, stream, steps=steps, seed=seed, device=device,
               precision="fp32", log=log, log_every=log_every, save=save, checkpoint_every=checkpoint_every,
               resume=resume, hooks=[lambda info: progress(1)] if progress is not None else [])  # fmt: skip


def evaluate_sr(net: nn.Module, images: Sequence[torch.Tensor], *, batch_size: int = 32,
                device: str | torch.device = "cpu") -> dict[str, float | int]:  # fmt: skip
    """PSNR-Y / SSIM-Y of ``net`` and of bicubic upsampling on held-out HR ``images`` (uint8 [3, H, W] each).

    Each image is cut to a multiple of the scale, shrunk by the antialiased bicubic and brought back by the
    network and by bicubic; scores shave ``scale`` border pixels and are averaged over images.

    Returns:
        ``sr/psnr_y``, ``sr/ssim_y``, ``bicubic/psnr_y``, ``bicubic/ssim_y``, ``gain/psnr_y``, ``gain/ssim_y``
        (SR minus bicubic) and ``images``.
    """
    scale = int(net.scale)
    scores: dict[str, list[torch.Tensor]] = {k: [] for k in ("sr/psnr_y", "sr/ssim_y", "bicubic/psnr_y", "bicubic/ssim_y")}
    hr_all = [crop_to_scale(image, scale) for image in images]
    for shape in sorted({tuple(h.shape) for h in hr_all}):
        hr = torch.stack([h for h in hr_all if tuple(h.shape) == shape])
        lr = resize_bicubic(hr, (shape[1] // scale, shape[2] // scale))
        for name, upsampled in (("sr", super_resolve(net, lr, batch_size=batch_size, device=device)),
                                ("bicubic", resize_bicubic(lr, shape[1:]))):  # fmt: skip
            scores[f"{name}/psnr_y"].append(psnr_y(upsampled, hr, shave=scale))
            scores[f"{name}/ssim_y"].append(ssim_y(upsampled, hr, shave=scale))
    means = {key: float(torch.cat(values).mean()) for key, values in scores.items()}
    gains = {f"gain/{m}": means[f"sr/{m}"] - means[f"bicubic/{m}"] for m in ("psnr_y", "ssim_y")}
    return {**means, **gains, "images": len(hr_all)}
