"""The one evaluation preprocessing, and the training augmentation presets beside it.

``Preprocess`` is stored in every model file; evaluation during training, ``reslab eval``,
``reslab predict`` and serving all build their inputs with it and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import v2

from .images import open_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DATASET_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}
INTERPOLATIONS = {
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
    "nearest": v2.InterpolationMode.NEAREST,
}


def eval_resize_size(image_size: int) -> int:
    """ImageNet's Resize(256)/CenterCrop(224) ratio at any size; small images are not cropped."""
    return image_size if image_size <= 64 else round(image_size * 256 / 224)


DECODE_POLICIES = ("reduced", "full")


@dataclass
class Preprocess:
    """Decode, resize the short side, centre-crop, scale to [0, 1] and normalise.

    ``decode``: ``reduced`` decodes a JPEG at the smallest libjpeg DCT scale (1/2, 1/4, 1/8) that keeps
    both sides at least ``resize_size`` (far less work for large photos), ``full`` at full size. It is
    stored with the model, and evaluation, prediction, serving and export checks all decode with it,
    so one image gives one tensor everywhere."""

    image_size: int
    resize_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int = 3
    interpolation: str = "bilinear"
    decode: str = "reduced"

    def __post_init__(self) -> None:
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"mean and std need {self.in_chans} values each, got {self.mean} and {self.std}")
        if self.decode not in DECODE_POLICIES:
            raise ValueError(f"decode policy {self.decode!r}: expected one of {', '.join(DECODE_POLICIES)}")

    def open(self, source: str | Path | bytes, max_pixels: int | None = None, name: str | None = None) -> Image.Image:
        """Decode an image file or its bytes with this model's decode policy (``open_image``'s errors)."""
        min_size = self.resize_size if self.decode == "reduced" else None
        return open_image(source, self.in_chans, min_size=min_size, max_pixels=max_pixels, name=name)

    def geometry(self) -> v2.Compose:
        """PIL image -> uint8 tensor (C, image_size, image_size)."""
        return v2.Compose([
            v2.ToImage(),
            v2.Resize(self.resize_size, interpolation=INTERPOLATIONS[self.interpolation], antialias=True),
            v2.CenterCrop(self.image_size),
        ])

    def normalize(self, batch: Tensor) -> Tensor:
        """uint8 (N, C, H, W) on any device -> normalised float32."""
        mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1) * 255
        std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1) * 255
        return (batch.float() - mean) / std

    def __call__(self, image: Image.Image) -> Tensor:
        """One PIL image -> normalised float tensor (C, H, W)."""
        return self.normalize(self.geometry()(image).unsqueeze(0))[0]


@dataclass
class AugmentOptions:
    preset: str = "cifar"  # "cifar": pad-and-crop + flip; "imagenet": RandomResizedCrop + flip
    auto_augment: str = "none"  # none | randaugment | trivialaugment
    color_jitter: float = 0.0
    random_erasing: float = 0.0
    crop_padding: int = 4


def _auto_augment(name: str) -> list[v2.Transform]:
    if name == "none":
        return []
    if name == "randaugment":
        return [v2.RandAugment()]
    if name == "trivialaugment":
        return [v2.TrivialAugmentWide()]
    raise ValueError(f"auto_augment must be none, randaugment or trivialaugment, got {name!r}")


def train_transform(options: AugmentOptions, pre: Preprocess) -> v2.Compose:
    """Per-image training transform for images read from disk (PIL -> normalised float tensor)."""
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
    steps = [v2.ToImage(), *geometry, v2.RandomHorizontalFlip()]
    if options.color_jitter > 0:
        j = options.color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j if pre.in_chans == 3 else 0))
    steps += _auto_augment(options.auto_augment)
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

    def __getitem__(self, index: Tensor) -> CropFlipDraws:
        return CropFlipDraws(self.dy[index], self.dx[index], self.flip[index])


class BatchAugment:
    """Augments a whole uint8 batch at once (on the batch's device): pad-and-crop, flip, then
    the optional per-image policies. Crops and flips come from ``draw``, made with a seeded
    generator for every sample of an epoch, so runs repeat exactly whatever the batching."""

    def __init__(self, options: AugmentOptions, pre: Preprocess) -> None:
        if options.preset != "cifar":
            raise ValueError("in-memory batches support the 'cifar' preset (pad-and-crop + flip)")
        self.options = options
        self.pre = pre
        self.per_image = v2.Compose(_auto_augment(options.auto_augment)) if options.auto_augment != "none" else None
        self.erase = v2.RandomErasing(p=options.random_erasing) if options.random_erasing > 0 else None

    def draw(self, n: int, generator: torch.Generator) -> CropFlipDraws:
        span = 2 * self.options.crop_padding + 1
        return CropFlipDraws(torch.randint(0, span, (n,), generator=generator),
                             torch.randint(0, span, (n,), generator=generator),
                             torch.rand(n, generator=generator) < 0.5)

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
        if self.per_image is not None:
            batch = torch.stack([self.per_image(img) for img in batch])
        out = self.pre.normalize(batch)
        if self.erase is not None:
            out = torch.stack([self.erase(img) for img in out])
        return out
