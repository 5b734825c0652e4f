"""The per-sample and per-batch steps of the paths from files and packs (``StreamLoader``'s ``read`` and
``finish``).

CPU path: a worker decodes each JPEG at the smallest libjpeg scale that still gives its crop box
enough pixels (the box is drawn on the full size, then mapped), crops, resizes and flips with Pillow,
and hands over uint8; the main process normalises whole batches (and jitters their colours).

GPU path: a worker only reads the file's bytes (and its EXIF orientation from the header); the main
process decodes the batch's JPEGs with nvJPEG (``decode.decode_jpegs``: TorchCodec or torchvision.io),
then crops, flips, jitters and normalises the whole batch on the GPU. Files nvJPEG cannot take
(PNG, GIF, WebP, CMYK or 16-bit JPEGs...) are decoded on the CPU by the worker, as ``open_image`` does.

Per-image path: a worker crops as the CPU path does (or pad-and-crops for the CIFAR preset, as the in-memory
path does), jitters, then runs torchvision's per-image policies; the main process only moves the batch to the
device. Which path runs which augmentation: ``augmentations.AUGMENTATIONS``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from .batch_ops import color_jitter, flip_where, resized_crops, shifted_crops
from .crops import (
    CropDraw,
    center_box,
    jitter_factors,
    jpeg_reduction,
    policy_seed,
    scale_box,
    shift_draw,
    train_draw,
)
from .decode import as_bytes_tensor, decode_jpeg, decode_jpegs
from .images import UnreadableImageError, open_image, oriented_size
from .options import AugmentOptions
from .preprocess import RESAMPLE, Preprocess, to_chw
from .streams import RawBatch
from .transforms import INTERPOLATIONS, train_policies

Source = Path | bytes
NVJPEG_MODES = ("RGB", "L")  # what nvJPEG decodes as such; CMYK, YCCK and 12/16-bit go to the CPU
_JPEG_MAGIC = b"\xff\xd8"


@dataclass
class TrainCrops:
    """A worker's training sample on the CPU: RandomResizedCrop + flip -> uint8 (C, size, size).

    A JPEG whose crop needs every pixel (no DCT reduction applies) is decoded to a tensor
    (``decode.decode_jpeg``) and cropped as one: about twice as fast as Pillow for such small images.
    Any other image goes through Pillow, which can decode a JPEG at a reduced scale."""

    image_size: int
    channels: int
    interpolation: str
    seed: int

    def __call__(self, source: Source, index: int, epoch: int) -> np.ndarray:
        data = source.read_bytes() if isinstance(source, Path) else source
        if data[:2] == _JPEG_MAGIC:
            crop = self._full_scale_jpeg(data, index, epoch)
            if crop is not None:
                return crop
        return self._pillow(data, index, epoch, _name(source, index))

    def _full_scale_jpeg(self, data: bytes, index: int, epoch: int) -> np.ndarray | None:
        """The crop by torchvision, or None where Pillow should do it (a reduction applies, an odd mode,
        or a file torchvision refuses: Pillow then names the problem)."""
        try:
            with Image.open(io.BytesIO(data)) as header:
                if header.mode not in NVJPEG_MODES:
                    return None
                size = oriented_size(header)
        except (OSError, SyntaxError, ValueError):
            return None
        draw = train_draw(*size, self.seed, epoch, index)
        if jpeg_reduction(draw.box, self.image_size) > 1:
            return None
        try:
            image = decode_jpeg(as_bytes_tensor(data), self.channels)
        except RuntimeError:
            return None
        left, top, w, h = draw.box
        crop = TF.resized_crop(image, int(top), int(left), int(h), int(w), [self.image_size, self.image_size],
                               interpolation=INTERPOLATIONS[self.interpolation], antialias=True)
        return (crop.flip(-1) if draw.flip else crop).numpy()

    def _pillow(self, source: Source, index: int, epoch: int, name: str) -> np.ndarray:
        drawn: list[tuple[tuple[int, int], CropDraw]] = []

        def reduction(width: int, height: int) -> int:
            draw = train_draw(width, height, self.seed, epoch, index)
            drawn.append(((width, height), draw))
            return jpeg_reduction(draw.box, self.image_size)

        img = open_image(source, self.channels, reduction=reduction, name=name)
        full, draw = drawn[0]
        left, top, w, h = scale_box(draw.box, full, img.size)
        out = img.resize((self.image_size, self.image_size), RESAMPLE[self.interpolation],
                         box=(left, top, left + w, top + h))
        if draw.flip:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_chw(out)


@dataclass
class EvalGeometry:
    """A worker's evaluation sample on the CPU: the model's own ``Preprocess`` geometry, uint8."""

    pre: Preprocess

    def __call__(self, source: Source, index: int, epoch: int) -> np.ndarray:
        return self.pre.geometry(self.pre.open(source, name=_name(source, index)))


@dataclass
class ShiftedCrops:
    """A worker's training sample for the CIFAR preset: the model's resize and centre crop, then pad-and-crop
    and flip by the batch operations the in-memory path runs -> uint8 (C, size, size)."""

    pre: Preprocess
    padding: int
    seed: int

    def __call__(self, source: Source, index: int, epoch: int) -> np.ndarray:
        image = torch.from_numpy(self.pre.geometry(self.pre.open(source, name=_name(source, index))))[None]
        dy, dx, flip = shift_draw(self.padding, self.seed, epoch, index)
        shifted = shifted_crops(image, torch.tensor([dy]), torch.tensor([dx]), self.padding)
        return flip_where(shifted, torch.tensor([flip]))[0].numpy()


@dataclass
class PerImageTransform:
    """A worker's training sample on the per-image path: the crop and flip of a shared read step (``TrainCrops``
    as on the CPU path, or ``ShiftedCrops``), the colour jitter every path runs, then the per-image policies
    (RandAugment, TrivialAugment, erasing). Every draw is seeded by (seed, epoch, index), so that it depends on
    neither the workers nor the batching, and a resumed run repeats it."""

    crop: Callable[[Source, int, int], np.ndarray]
    policies: Callable[[Tensor], Tensor]
    seed: int
    jitter: float = 0.0

    def __call__(self, source: Source, index: int, epoch: int) -> np.ndarray:
        x = torch.from_numpy(self.crop(source, index, epoch))
        if self.jitter > 0:
            x = jittered(x[None].float(), self.jitter, self.seed, epoch, [index])[0].round().to(torch.uint8)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(policy_seed(self.seed, epoch, index))
            return self.policies(x).numpy()


def per_image_transform(augment: AugmentOptions, pre: Preprocess, seed: int) -> PerImageTransform:
    if augment.preset == "imagenet":
        crop: Callable[[Source, int, int], np.ndarray] = TrainCrops(pre.image_size, pre.in_chans, pre.interpolation,
                                                                    seed)
    elif augment.preset == "cifar":
        crop = ShiftedCrops(pre, augment.crop_padding, seed)
    else:
        raise ValueError(f"augmentation preset must be 'cifar' or 'imagenet', got {augment.preset!r}")
    return PerImageTransform(crop, train_policies(augment, pre), seed, augment.color_jitter)


def to_device(device: torch.device) -> Callable[[RawBatch, int], Tensor]:
    """The per-image path's ``finish``: its batches are already normalised; they only move to ``device``."""
    def finish(batch: RawBatch, epoch: int) -> Tensor:
        assert isinstance(batch.payloads, Tensor)
        return batch.payloads.to(device, non_blocking=True)

    return finish


def _name(source: Source, index: int) -> str:
    return str(source) if isinstance(source, Path) else f"image {index}"


@dataclass
class EncodedJpeg:
    data: Tensor  # the file's bytes, uint8
    orientation: int  # EXIF orientation, 1 when there is none


@dataclass
class ReadEncoded:
    """A worker's sample on the GPU path: a JPEG's bytes for nvJPEG, or anything else decoded here."""

    channels: int

    def __call__(self, source: Source, index: int, epoch: int) -> EncodedJpeg | np.ndarray:
        data = source.read_bytes() if isinstance(source, Path) else source
        name = _name(source, index)
        if data[:2] == _JPEG_MAGIC:
            try:
                with Image.open(io.BytesIO(data)) as header:
                    if header.mode in NVJPEG_MODES:
                        orientation = header.getexif().get(ExifTags.Base.Orientation, 1)
                        return EncodedJpeg(as_bytes_tensor(data), int(orientation))
            except (OSError, SyntaxError, ValueError):
                pass  # open_image below names the problem
        return to_chw(open_image(data, self.channels, name=name))


def decode_on_device(payloads: list[EncodedJpeg | np.ndarray], channels: int, device: torch.device
                     ) -> tuple[list[Tensor | None], list[str | None]]:
    """Upright uint8 (C, H, W) images on ``device``: JPEGs decoded there in one batched call, the rest
    moved there. A JPEG the batched decoder refuses is tried alone, then on the CPU; one that nothing
    decodes comes back as ``None`` with its reason."""
    images: list[Tensor | None] = [None] * len(payloads)
    reasons: list[str | None] = [None] * len(payloads)
    jpegs = [p for p in payloads if isinstance(p, EncodedJpeg)]
    try:
        decoded = decode_jpegs([p.data for p in jpegs], [p.orientation for p in jpegs], channels, device)
    except RuntimeError:  # one refused image fails the whole batch: each is tried alone below
        decoded = [None] * len(jpegs)
    slots = [k for k, p in enumerate(payloads) if isinstance(p, EncodedJpeg)]
    for k, payload, image in zip(slots, jpegs, decoded):
        try:
            images[k] = _decode_alone(payload, channels, device) if image is None else image
        except UnreadableImageError as e:
            reasons[k] = str(e)
    for k, p in enumerate(payloads):
        if isinstance(p, np.ndarray):
            images[k] = torch.from_numpy(p).to(device, non_blocking=True)
    return images, reasons


def _decode_alone(payload: EncodedJpeg, channels: int, device: torch.device) -> Tensor:
    """One JPEG on ``device``, or on the CPU by ``open_image`` where the device's decoder refuses it."""
    try:
        return decode_jpegs([payload.data], [payload.orientation], channels, device)[0]
    except RuntimeError:
        return torch.from_numpy(to_chw(open_image(payload.data.numpy().tobytes(), channels))).to(device)


def jittered(x: Tensor, strength: float, seed: int, epoch: int, indices: list[int]) -> Tensor:
    """Colour jitter of a batch of 0..255 floats with each sample's own factors (none at strength 0)."""
    if strength <= 0:
        return x
    return color_jitter(x, torch.from_numpy(jitter_factors(seed, epoch, indices, strength)))


@dataclass
class NormalizeBatch:
    """The CPU path's ``finish``: uint8 crops -> (colour jitter) -> normalised float32 on the device."""

    pre: Preprocess
    device: torch.device
    jitter: float = 0.0
    seed: int = 0

    def __call__(self, batch: RawBatch, epoch: int) -> Tensor:
        assert isinstance(batch.payloads, Tensor)
        x = batch.payloads.to(self.device, non_blocking=True).float()
        return self.pre.normalize(jittered(x, self.jitter, self.seed, epoch, batch.indices))


@dataclass
class DeviceCrops:
    """The GPU path's ``finish``: decode on the device (dropping from ``batch`` what cannot be decoded),
    then crop (training: each sample's random box and flip, the same draws as ``TrainCrops``; evaluation:
    resize and centre crop), jitter, normalise."""

    pre: Preprocess
    device: torch.device
    train: bool
    jitter: float = 0.0
    seed: int = 0

    def boxes(self, images: list, indices: list[int], epoch: int) -> tuple[list, Tensor | None]:
        if not self.train:
            boxes = [center_box(t.shape[-1], t.shape[-2], self.pre.resize_size, self.pre.image_size) for t in images]
            return boxes, None
        draws = [train_draw(t.shape[-1], t.shape[-2], self.seed, epoch, i) for t, i in zip(images, indices)]
        return [d.box for d in draws], torch.tensor([d.flip for d in draws])

    def __call__(self, batch: RawBatch, epoch: int) -> Tensor:
        assert isinstance(batch.payloads, list)
        decoded, reasons = decode_on_device(batch.payloads, self.pre.in_chans, self.device)
        keep = [k for k, reason in enumerate(reasons) if reason is None]
        batch.failed += [(batch.indices[k], reason) for k, reason in enumerate(reasons) if reason is not None]
        batch.indices, batch.labels = [batch.indices[k] for k in keep], batch.labels[keep]
        images = [decoded[k] for k in keep]
        if not images:
            return torch.empty(0, device=self.device)
        boxes, flips = self.boxes(images, batch.indices, epoch)
        x = resized_crops(images, boxes, self.pre.image_size)
        if flips is not None:
            x = flip_where(x, flips)
        return self.pre.normalize(jittered(x, self.jitter, self.seed, epoch, batch.indices))
