"""The one evaluation preprocessing, in NumPy and Pillow: no torch, so ONNX and OpenVINO deployments need none.

``Preprocess`` is stored in every model file; evaluation during training, ``reslab eval``, ``reslab
predict`` and serving all build their inputs with it and nothing else. The resize is Pillow's, which is
also what torchvision's own ``weights.transforms()`` runs on a PIL image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .images import open_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DATASET_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}
RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC}
PIL_RESAMPLE = {int(code): name for name, code in RESAMPLE.items()}  # the codes image processors store
DECODE_POLICIES = ("reduced", "full")


def eval_resize_size(image_size: int) -> int:
    """ImageNet's Resize(256)/CenterCrop(224) ratio at any size; small images are not cropped."""
    return image_size if image_size <= 64 else round(image_size * 256 / 224)


def resize_short_side(image: Image.Image, size: int, interpolation: str) -> Image.Image:
    """The short side to ``size``, the long one in proportion (rounded down, as torchvision's ``Resize``)."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new = (new_short, new_long) if w <= h else (new_long, new_short)
    return image if new == (w, h) else image.resize(new, RESAMPLE[interpolation])


def to_chw(image: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image or (H, W[, C]) array -> contiguous uint8 (C, H, W)."""
    array = np.asarray(image)
    return np.ascontiguousarray((array[:, :, None] if array.ndim == 2 else array).transpose(2, 0, 1))


def center_crop(array: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) -> (size, size, C), padded with zeros where the image is smaller (as torchvision's)."""
    h, w = array.shape[:2]
    if h < size or w < size:
        top, left = max(0, (size - h) // 2), max(0, (size - w) // 2)
        bottom, right = max(0, (size - h + 1) // 2), max(0, (size - w + 1) // 2)
        array = np.pad(array, ((top, bottom), (left, right), (0, 0)))
        h, w = array.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return array[top : top + size, left : left + size]


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
        if self.interpolation not in RESAMPLE:
            raise ValueError(f"interpolation {self.interpolation!r}: expected one of {', '.join(RESAMPLE)}")

    def open(self, source: str | Path | bytes, max_pixels: int | None = None, name: str | None = None) -> Image.Image:
        """Decode an image file or its bytes with this model's decode policy (``open_image``'s errors)."""
        min_size = self.resize_size if self.decode == "reduced" else None
        return open_image(source, self.in_chans, min_size=min_size, max_pixels=max_pixels, name=name)

    def geometry(self, image: Image.Image) -> np.ndarray:
        """PIL image -> uint8 array (C, image_size, image_size)."""
        array = np.asarray(resize_short_side(image, self.resize_size, self.interpolation))
        return to_chw(center_crop(array[:, :, None] if array.ndim == 2 else array, self.image_size))

    def normalize(self, batch: Any) -> Any:
        """uint8 (N, C, H, W) images, (N, C, T, H, W) clips or (N, K, C, T, H, W) clips of videos -> normalised
        float32: a NumPy array, or a torch tensor on any device. Both compute in float32 with the same
        operations, so they agree exactly."""
        channels = 1 if batch.ndim == 4 else batch.ndim - 4  # before (T,) H, W
        shape = tuple(-1 if axis == channels else 1 for axis in range(batch.ndim))
        if isinstance(batch, np.ndarray):
            mean = np.asarray(self.mean, np.float32).reshape(shape) * np.float32(255)
            std = np.asarray(self.std, np.float32).reshape(shape) * np.float32(255)
            return (batch.astype(np.float32) - mean) / std
        x = batch.float()
        return (x - x.new_tensor(self.mean).view(shape) * 255) / (x.new_tensor(self.std).view(shape) * 255)

    def batch(self, images: list[Image.Image]) -> np.ndarray:
        """PIL images -> one normalised float32 batch (N, C, H, W)."""
        return self.normalize(np.stack([self.geometry(image) for image in images]))

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One PIL image -> normalised float32 array (C, H, W)."""
        return self.batch([image])[0]


@dataclass
class Clip:
    """How a video model's clips are drawn: frames per clip, the stride between them, clips per video."""

    frames: int
    stride: int
    clips: int = 1
