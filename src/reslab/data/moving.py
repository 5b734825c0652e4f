"""Short videos made from still photos with a moving camera (pan, zoom, a small rotation), encoded as H.264 MP4
by TorchCodec: real pixels for checking video models where no labelled video set can be downloaded.

Two tasks: ``appearance`` (the class is the photo's class, the camera moves at random) and ``motion`` (the same
photos panned left or right, the class being the direction: only the time axis can tell them apart).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from .batch_ops import resized_crops

MOTIONS = ("left", "right")


def camera_path(width: int, height: int, frames: int, rng: np.random.Generator, direction: str | None = None,
                ) -> list[tuple[float, float, float, float]]:
    """A crop box per frame: a window of 55-75% of the short side that pans across the photo (to the left or the
    right when ``direction`` is given, any way otherwise) and zooms by up to 15%."""
    side = min(width, height) * rng.uniform(0.55, 0.75)
    zoom = rng.uniform(-0.15, 0.15)
    angle = rng.uniform(0, 2 * math.pi) if direction is None else (math.pi if direction == "left" else 0.0)
    travel = rng.uniform(0.2, 0.3) * min(width, height)
    dx, dy = travel * math.cos(angle), travel * math.sin(angle) * (direction is None)
    cx, cy = width / 2 - dx / 2, height / 2 - dy / 2
    boxes = []
    for t in range(frames):
        f = t / max(1, frames - 1)
        s = side * (1 + zoom * f)
        x, y = cx + dx * f, cy + dy * f
        boxes.append((min(max(0.0, x - s / 2), width - s), min(max(0.0, y - s / 2), height - s), s, s))
    return boxes


def camera_clip(photo: Tensor, frames: int, size: int, rng: np.random.Generator, direction: str | None = None,
                max_degrees: float = 4.0) -> Tensor:
    """uint8 (C, H, W) photo -> uint8 (T, C, size, size): the camera's frames, turning by up to ``max_degrees``."""
    boxes = camera_path(photo.shape[-1], photo.shape[-2], frames, rng, direction)
    clip = resized_crops([photo] * frames, boxes, size).round().clamp(0, 255).to(torch.uint8)
    turn = rng.uniform(-max_degrees, max_degrees)
    if turn:
        clip = torch.stack([TF.rotate(frame, turn * t / max(1, frames - 1)) for t, frame in enumerate(clip)])
    return clip


def write_video(frames: Tensor, path: Path, fps: int = 8) -> Path:
    """uint8 (T, C, H, W) frames -> an H.264 MP4 (TorchCodec's encoder, FFmpeg underneath), cut to an even
    height and width (H.264's 4:2:0 colour needs them)."""
    from torchcodec.encoders import VideoEncoder  # torchcodec: the codec extra, with FFmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[-2] // 2 * 2, frames.shape[-1] // 2 * 2
    VideoEncoder(frames[..., :height, :width].contiguous(), frame_rate=fps).to_file(str(path))
    return path


def write_clip_set(photos: dict[str, Sequence[tuple[Tensor, str]]], out: Path, task: str, frames: int = 16,
                   size: int = 64, seed: int = 0, fps: int = 8) -> Path:
    """``out/<split>/<class>/<n>.mp4`` from each split's (uint8 photo, class) pairs; keep each photo in one split,
    so that none is seen in training and tested on. ``motion``: each photo gives one clip panned left and one
    panned right, and the class is the direction."""
    if task not in ("appearance", "motion"):
        raise ValueError(f"task {task!r}: expected appearance or motion")
    rng = np.random.default_rng(seed)
    for split, pairs in photos.items():
        for i, (photo, label) in enumerate(pairs):
            for direction in (MOTIONS if task == "motion" else (None,)):
                clip = camera_clip(photo, frames, size, rng, direction)
                write_video(clip, out / split / (direction or label) / f"{i:05d}.mp4", fps)
    return out
