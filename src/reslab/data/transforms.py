"""The in-memory path's batch augmentation, and the per-image policies of the per-image path.

Evaluation's preprocessing is ``data.preprocess.Preprocess``, which needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms import v2

from .augmentations import not_run_by
from .batch_ops import color_jitter, flip_where, shifted_crops
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


def train_policies(options: AugmentOptions, pre: Preprocess) -> v2.Compose:
    """The per-image path after its crop, flip and colour jitter (the operations every path shares): the
    policy, normalisation and erasing, uint8 -> normalised float32."""
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
        missing = not_run_by("memory", options)
        if missing:
            raise ValueError(f"in-memory batches do not run {', '.join(missing)}: use the 'cifar' preset "
                             f"(pad-and-crop + flip), or --no-in-memory")
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
        return flip_where(shifted_crops(batch, draws.dy, draws.dx, self.options.crop_padding), draws.flip)

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
