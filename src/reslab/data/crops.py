"""The geometry of training crops, shared by the CPU and GPU data paths (NumPy, no torch).

A sample's crop and flip are drawn from a generator seeded by (seed, epoch, sample index) on the
image's own (EXIF-oriented) size, so both paths, any number of workers and any batching draw the
same boxes for a given seed and epoch. Boxes are ``(left, top, width, height)`` in pixels of the
full-size image; a path that decodes at a reduced scale maps them with ``scale_box``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RRC_SCALE = (0.08, 1.0)  # RandomResizedCrop's defaults, as torchvision's
RRC_RATIO = (3 / 4, 4 / 3)
JPEG_REDUCTIONS = (8, 4, 2, 1)  # libjpeg's DCT scales, largest first

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class CropDraw:
    box: Box
    flip: bool


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng((seed, epoch, index))


def random_resized_box(width: int, height: int, rng: np.random.Generator,
                       scale: tuple[float, float] = RRC_SCALE, ratio: tuple[float, float] = RRC_RATIO) -> Box:
    """torchvision's ``RandomResizedCrop`` box: up to ten tries of a random area and log-uniform aspect
    ratio that fit, else the centre crop at the nearest allowed ratio."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return (left, top, w, h)
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return ((width - w) // 2, (height - h) // 2, w, h)


def train_draw(width: int, height: int, seed: int, epoch: int, index: int) -> CropDraw:
    rng = sample_rng(seed, epoch, index)
    box = random_resized_box(width, height, rng)
    return CropDraw(box, bool(rng.random() < 0.5))


def shift_draw(padding: int, seed: int, epoch: int, index: int) -> tuple[int, int, bool]:
    """A sample's pad-and-crop offsets (dy, dx), each in 0..2 x padding, and its flip."""
    rng = sample_rng(seed, epoch, index)
    dy, dx = rng.integers(0, 2 * padding + 1, 2)
    return int(dy), int(dx), bool(rng.random() < 0.5)


def policy_seed(seed: int, epoch: int, index: int) -> int:
    """The torch seed of a sample's per-image policies (RandAugment, erasing), apart from its crop draws."""
    return int(np.random.default_rng((seed, epoch, index, 2)).integers(2**63))


def center_box(width: int, height: int, resize_size: int, image_size: int) -> Box:
    """The part of the full-size image that evaluation's resize (short side to ``resize_size``) and
    centre crop (``image_size``) keep, in full-size pixels."""
    side = image_size * min(width, height) / resize_size
    w, h = min(side, width), min(side, height)
    return ((width - w) / 2, (height - h) / 2, w, h)


def jpeg_reduction(box: Box, out_size: int) -> int:
    """The largest DCT reduction (8, 4, 2, 1) at which the box still has ``out_size`` pixels on its
    short side: the crop is then resized down, never up, from what was decoded."""
    short = min(box[2], box[3])
    return next(r for r in JPEG_REDUCTIONS if short / r >= out_size or r == 1)


def scale_box(box: Box, full: tuple[int, int], decoded: tuple[int, int]) -> Box:
    """A box on the full-size (width, height) mapped onto the same image decoded at ``decoded`` size."""
    sx, sy = decoded[0] / full[0], decoded[1] / full[1]
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def jitter_range(strength: float) -> tuple[float, float]:
    """Where colour-jitter factors lie: [1 - strength, 1 + strength], never below 0."""
    return max(0.0, 1.0 - strength), 1.0 + strength


def jitter_factors(seed: int, epoch: int, indices: list[int], strength: float) -> np.ndarray:
    """Brightness, contrast and saturation factors in ``jitter_range``, (N, 3), drawn per sample apart from
    its crop (the image's size is not needed to draw them)."""
    low, high = jitter_range(strength)
    return np.stack([np.random.default_rng((seed, epoch, i, 1)).uniform(low, high, 3) for i in indices])
