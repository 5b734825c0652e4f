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


def batch_resized_crops(batch: Tensor, boxes: Tensor, size: int) -> Tensor:
    """One batch of equal-size images (N, C, H, W) and a box (N, 4) ``(left, top, width, height)`` inside each ->
    float32 (N, C, size, size): ``resized_crops`` without the canvas, as every box lies inside its image."""
    boxes = boxes.to(batch.device, torch.float32)
    rois = torch.cat([torch.arange(len(batch), device=batch.device, dtype=torch.float32)[:, None],
                      boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1)
    return roi_align(batch.float(), rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


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


def hue_shift(batch: Tensor, shifts: Tensor) -> Tensor:
    """Each RGB image (N, 3, H, W) of 0..255 floats with its hue turned by its own shift (N,), in turns of the colour
    wheel (torchvision's ``adjust_hue``: through HSV and back)."""
    x = batch / 255
    value, _ = x.max(dim=1)
    spread = value - x.min(dim=1)[0]
    saturation = torch.where(value > 0, spread / value.clamp_min(1e-12), torch.zeros_like(value))
    r, g, b = ((value[:, None] - x) / spread.clamp_min(1e-12)[:, None]).unbind(1)
    hue = torch.where(value == x[:, 0], b - g, torch.where(value == x[:, 1], 2 + r - b, 4 + g - r))
    hue = torch.where(spread > 0, hue / 6, torch.zeros_like(hue))
    hue = (hue + shifts.to(x.device, x.dtype).view(-1, 1, 1)) % 1.0
    sector = torch.floor(hue * 6)
    f = hue * 6 - sector
    p, q, t = value * (1 - saturation), value * (1 - saturation * f), value * (1 - saturation * (1 - f))
    sector = sector.long() % 6
    choices = {0: (value, t, p), 1: (q, value, p), 2: (p, value, t), 3: (p, q, value), 4: (t, p, value),
               5: (value, p, q)}
    out = torch.zeros_like(x)
    for s, rgb in choices.items():
        out = torch.where((sector == s)[:, None], torch.stack(rgb, dim=1), out)
    return out * 255


def gray_where(batch: Tensor, grays: Tensor) -> Tensor:
    """The images whose flag is set in grey, kept in three channels."""
    return torch.where(grays.to(batch.device)[:, None, None, None], _gray(batch).expand_as(batch), batch)


def solarize_where(batch: Tensor, flags: Tensor, threshold: float = 128.0) -> Tensor:
    """The flagged images of 0..255 floats solarised: every value at or above ``threshold`` inverted."""
    inverted = torch.where(batch >= threshold, 255 - batch, batch)
    return torch.where(flags.to(batch.device)[:, None, None, None], inverted, batch)


def _gray(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)
