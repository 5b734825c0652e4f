"""Augmentation of whole batches of decoded images, on whatever device they are (GPU or CPU).

The GPU data path decodes a batch of JPEGs at once and must then crop every image at its own box
without a Python loop of per-image transforms: ``resized_crops`` pastes the images of any sizes into
one canvas and resamples every box with a single ``torchvision.ops.roi_align``, which averages a grid
of bilinear samples per output pixel (an antialiased resize). A fourth channel marks the real pixels,
so that samples near an image's edge are normalised by it and never mix in the canvas' padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align

from .crops import Box

CANVAS_BYTES = 1 << 30  # float32 canvas per roi_align call; larger batches of large images go in chunks

# EXIF orientation -> the turn that shows the image upright (as PIL's ``ImageOps.exif_transpose``)
_ORIENT = {
    2: lambda t: t.flip(-1),
    3: lambda t: t.flip(-1, -2),
    4: lambda t: t.flip(-2),
    5: lambda t: t.transpose(-1, -2),
    6: lambda t: torch.rot90(t, -1, (-2, -1)),
    7: lambda t: t.transpose(-1, -2).flip(-1, -2),
    8: lambda t: torch.rot90(t, 1, (-2, -1)),
}


def orient(image: Tensor, orientation: int) -> Tensor:
    """A (C, H, W) image as shown, given its EXIF orientation (1..8; anything else: unchanged)."""
    turn = _ORIENT.get(orientation)
    return turn(image) if turn else image


def _chunks(images: Sequence[Tensor], budget: int) -> list[range]:
    """Consecutive ranges of images whose padded canvas stays under ``budget`` bytes."""
    ranges, start, height, width = [], 0, 0, 0
    for i, img in enumerate(images):
        h, w = max(height, img.shape[-2]), max(width, img.shape[-1])
        if i > start and (i - start + 1) * (img.shape[0] + 1) * h * w * 4 > budget:
            ranges.append(range(start, i))
            start, h, w = i, img.shape[-2], img.shape[-1]
        height, width = h, w
    ranges.append(range(start, len(images)))
    return ranges


def resized_crops(images: Sequence[Tensor], boxes: Sequence[Box], size: int, budget: int = CANVAS_BYTES) -> Tensor:
    """uint8 (C, H_i, W_i) images of any sizes and one ``(left, top, width, height)`` box each ->
    float32 (N, C, size, size), 0..255: each box resized to ``size`` x ``size``."""
    out = []
    for part in _chunks(images, budget):
        group = [images[i] for i in part]
        channels = group[0].shape[0]
        height, width = max(t.shape[-2] for t in group), max(t.shape[-1] for t in group)
        device = group[0].device
        canvas = torch.zeros((len(group), channels + 1, height, width), device=device)
        for i, img in enumerate(group):  # one copy each; the crops below are one call for the chunk
            canvas[i, :channels, : img.shape[-2], : img.shape[-1]] = img
        sizes = torch.tensor([t.shape[-2:] for t in group], device=device)
        rows = torch.arange(height, device=device)[None, :, None] < sizes[:, 0, None, None]
        cols = torch.arange(width, device=device)[None, None, :] < sizes[:, 1, None, None]
        canvas[:, channels] = (rows & cols).float()
        b = torch.tensor([boxes[i] for i in part], dtype=torch.float32, device=device)
        rois = torch.cat([torch.arange(len(group), device=device, dtype=torch.float32)[:, None],
                          b[:, :2], b[:, :2] + b[:, 2:]], dim=1)
        crops = roi_align(canvas, rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        out.append(crops[:, :channels] / crops[:, channels:].clamp_min(1e-6))
    return torch.cat(out)


def shifted_crops(batch: Tensor, dy: Tensor, dx: Tensor, padding: int) -> Tensor:
    """Pad-and-crop (the CIFAR recipe's random translation): each (N, C, H, W) image zero-padded by ``padding``
    on every side, then cut back to H x W at its own offset ``(dy, dx)`` in 0..2 x padding."""
    n, _, h, w = batch.shape
    device = batch.device
    padded = torch.nn.functional.pad(batch, (padding,) * 4)
    rows = dy.to(device)[:, None] + torch.arange(h, device=device)
    cols = dx.to(device)[:, None] + torch.arange(w, device=device)
    index = torch.arange(n, device=device)[:, None, None]
    # (N, H, W, C) by advanced indexing, then back to NCHW
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def flip_where(batch: Tensor, flips: Tensor) -> Tensor:
    """Mirror the images whose flag is set."""
    return torch.where(flips.to(batch.device)[:, None, None, None], batch.flip(-1), batch)


def color_jitter(batch: Tensor, factors: Tensor) -> Tensor:
    """Brightness, contrast and saturation, each image (N, C, H, W) or clip (N, C, T, H, W) by its own factors
    (N, 3), on 0..255 floats; a clip's frames all alike, each frame's contrast around its own mean.

    The operations are torchvision's ``adjust_*`` blends, applied in that fixed order (``ColorJitter``
    shuffles the order per image)."""
    f = factors.to(batch.device, torch.float32).view(len(factors), 3, *(1,) * (batch.dim() - 1))
    x = (batch * f[:, 0]).clamp(0, 255)
    gray = _gray(x)
    x = (x * f[:, 1] + gray.mean(dim=(1, -2, -1), keepdim=True) * (1 - f[:, 1])).clamp(0, 255)
    if x.shape[1] == 3:
        x = (x * f[:, 2] + _gray(x) * (1 - f[:, 2])).clamp(0, 255)
    return x


def _gray(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)
