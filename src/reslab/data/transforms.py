"""The training augmentation presets, per image (PIL, from disk) and per batch (uint8 tensors in memory).

Evaluation's preprocessing is ``data.preprocess.Preprocess``, which needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms import v2

from .batch_ops import color_jitter
from .crops import jitter_range
from .options import AugmentOptions
from .preprocess import Preprocess

INTERPOLATIONS = {
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
    "nearest": v2.InterpolationMode.NEAREST,
}


def _auto_augment(name: str) -> list[v2.Transform]:
    if name == "none":
        return []
    if name == "randaugment":
        return [v2.RandAugment()]
    if name == "trivialaugment":
        return [v2.TrivialAugmentWide()]
    raise ValueError(f"auto_augment must be none, randaugment or trivialaugment, got {name!r}")


def train_geometry(options: AugmentOptions, pre: Preprocess) -> v2.Compose:
    """The per-image path's crop and flip: PIL -> uint8 (C, size, size)."""
    interpolation = INTERPOLATIONS[pre.interpolation]
    if options.preset == "imagenet":
        geometry: list[v2.Transform] = [
            v2.RandomResizedCrop(pre.image_size, interpolation=interpolation, antialias=True),
        ]
    elif options.preset == "cifar":
        geometry = [
            v2.Resize(pre.resize_size, interpolation=interpolation, antialias=True),
            v2.CenterCrop(pre.image_size),
            v2.RandomCrop(pre.image_size, padding=options.crop_padding),
        ]
    else:
        raise ValueError(f"augmentation preset must be 'cifar' or 'imagenet', got {options.preset!r}")
    return v2.Compose([v2.ToImage(), *geometry, v2.RandomHorizontalFlip()])


def train_policies(options: AugmentOptions, pre: Preprocess) -> v2.Compose:
    """The per-image path after its colour jitter (``batch_ops.color_jitter``, as on every path): the policy,
    normalisation and erasing, uint8 -> normalised float32."""
    steps = _auto_augment(options.auto_augment)
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(pre.mean), list(pre.std))]
    if options.random_erasing > 0:
        steps.append(v2.RandomErasing(p=options.random_erasing))
    return v2.Compose(steps)


@dataclass
class CropFlipDraws:
    """Random offsets and mirror flags, one per sample."""

    dy: Tensor
    dx: Tensor
    flip: Tensor
    jitter: Tensor | None = None  # brightness, contrast and saturation factors (N, 3), where jitter is on

    def __getitem__(self, index: Tensor) -> CropFlipDraws:
        jitter = self.jitter[index] if self.jitter is not None else None
        return CropFlipDraws(self.dy[index], self.dx[index], self.flip[index], jitter)


class BatchAugment:
    """Augments a whole uint8 batch at once (on the batch's device): pad-and-crop, flip, colour jitter
    (``batch_ops.color_jitter``, as on every path), then the optional per-image policies. The random
    draws come from ``draw``, made with a seeded generator for every sample of an epoch, so runs repeat
    exactly whatever the batching."""

    def __init__(self, options: AugmentOptions, pre: Preprocess) -> None:
        if options.preset != "cifar":
            raise ValueError("in-memory batches support the 'cifar' preset (pad-and-crop + flip)")
        self.options = options
        self.pre = pre
        self.per_image = v2.Compose(_auto_augment(options.auto_augment)) if options.auto_augment != "none" else None
        self.erase = v2.RandomErasing(p=options.random_erasing) if options.random_erasing > 0 else None

    def draw(self, n: int, generator: torch.Generator) -> CropFlipDraws:
        span = 2 * self.options.crop_padding + 1
        draws = CropFlipDraws(torch.randint(0, span, (n,), generator=generator),
                              torch.randint(0, span, (n,), generator=generator),
                              torch.rand(n, generator=generator) < 0.5)
        strength = self.options.color_jitter
        if strength > 0:  # drawn after the crops: a run without jitter keeps its draws
            low, high = jitter_range(strength)
            draws.jitter = low + (high - low) * torch.rand((n, 3), generator=generator)
        return draws

    def crop_flip(self, batch: Tensor, draws: CropFlipDraws) -> Tensor:
        n, _, h, w = batch.shape
        p = self.options.crop_padding
        device = batch.device
        padded = torch.nn.functional.pad(batch, (p, p, p, p))
        rows = draws.dy.to(device)[:, None] + torch.arange(h, device=device)
        cols = draws.dx.to(device)[:, None] + torch.arange(w, device=device)
        cols = torch.where(draws.flip.to(device)[:, None], cols.flip(1), cols)
        index = torch.arange(n, device=device)[:, None, None]
        # (N, H, W, C) by advanced indexing, then back to NCHW
        return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def __call__(self, batch: Tensor, draws: CropFlipDraws) -> Tensor:
        batch = self.crop_flip(batch, draws)
        if draws.jitter is not None:
            batch = color_jitter(batch.float(), draws.jitter).round().to(torch.uint8)
        if self.per_image is not None:
            batch = torch.stack([self.per_image(img) for img in batch])
        out = self.pre.normalize(batch)
        if self.erase is not None:
            out = torch.stack([self.erase(img) for img in out])
        return out
