"""Clips from videos: decoded by TorchCodec's ``VideoDecoder``, drawn by its samplers (random clips for training,
evenly spread ones for evaluation), then cropped, flipped and colour-jittered by the image path's batch operations
with one draw per clip, so that every frame of a clip gets the same box, flip and colours.

Workers decode and crop (``ClipRead``, uint8); the main process jitters and normalises whole batches as the
CPU image path does (``decoding.NormalizeBatch``). With ``--decode gpu`` the main process decodes each video on the
GPU instead (TorchCodec's CUDA decoder, NVDEC) and crops there (``DeviceClips``), with the same draws. Every draw is
seeded by (seed, epoch, index).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .batch_ops import flip_where, resized_crops
from .crops import Box, center_box, policy_seed, random_resized_box, sample_rng
from .decoding import jittered
from .images import UnreadableImageError
from .preprocess import Preprocess
from .splits import VideoSource
from .streams import RawBatch

# a clip's crop keeps at least a quarter of the frame (ImageNet's 8% loses the action); aspect as for images
VIDEO_CROP_SCALE = (0.25, 1.0)
FFMPEG_HINT = ("TorchCodec decodes videos with FFmpeg's libraries, which are not installed: apt-get install ffmpeg "
               "(macOS: brew install ffmpeg; conda: conda install -c conda-forge ffmpeg)")


class UnreadableVideoError(UnreadableImageError):
    """A video file that cannot be opened or decoded; skipped and named like an unreadable image."""


@functools.cache
def ffmpeg_refusal() -> str | None:
    """Why videos cannot be decoded here (TorchCodec or FFmpeg missing), or None."""
    try:
        from torchcodec import _core  # noqa: F401  (loads FFmpeg's libraries, or fails)
    except ModuleNotFoundError:
        return "videos are decoded by TorchCodec, which is not installed: pip install 'reslab[codec]'"
    except (OSError, RuntimeError):
        return FFMPEG_HINT
    return None


def open_video(source: VideoSource, device: torch.device | str = "cpu"):
    """A ``VideoDecoder`` on the file, decoding on ``device`` (a GPU: NVDEC); a file FFmpeg cannot open raises
    ``UnreadableVideoError`` naming it."""
    refusal = ffmpeg_refusal()
    if refusal:
        raise RuntimeError(refusal)
    from torchcodec.decoders import VideoDecoder  # torchcodec: the codec extra, with FFmpeg

    try:
        decoder = VideoDecoder(str(source.path), seek_mode="approximate", device=str(device))
        if decoder.metadata.num_frames is None or decoder.metadata.num_frames < 1:
            raise ValueError("no frames")
        return decoder
    except (RuntimeError, ValueError) as e:
        raise UnreadableVideoError(f"{source.path}: not a decodable video ({e})") from None


def nvdec_refusal(device: torch.device, probe: VideoSource | None = None) -> str | None:
    """Why videos cannot be decoded on ``device`` by TorchCodec's CUDA decoder (NVDEC), or None. ``probe``: a video
    opened there once, since whether this TorchCodec, FFmpeg and driver decode on the GPU shows only then."""
    if device.type != "cuda":
        return f"videos are decoded on the GPU only when training on one, not on {device}"
    if probe is None:
        return None
    try:
        open_video(probe, device)
    except UnreadableVideoError as e:
        try:
            open_video(probe)
        except UnreadableVideoError:
            return None  # a broken file, named when the loader reaches it
        return f"TorchCodec could not decode {probe.path} on {device} (NVDEC): {e}"
    return None


def frame_range(decoder, segment: tuple[float, float] | None) -> tuple[int, int]:
    """The frame indices [start, end) of a segment given in seconds (all frames for None)."""
    frames = decoder.metadata.num_frames
    if segment is None:
        return 0, frames
    fps = decoder.metadata.average_fps or 1.0
    start = min(frames - 1, int(segment[0] * fps))
    return start, max(start + 1, min(frames, int(round(segment[1] * fps))))


def sample_clips(decoder, segment: tuple[float, float] | None, frames: int, stride: int, clips: int | None,
                 seed_of_draw: int | None = None) -> Tensor:
    """uint8 (K, T, C, H, W): one random clip (``clips`` None, drawn from ``seed_of_draw``) or ``clips`` clips
    spread evenly; a video shorter than a clip repeats its last frame."""
    from torchcodec.samplers import clips_at_random_indices, clips_at_regular_indices  # torchcodec: codec extra

    start, end = frame_range(decoder, segment)
    span = (frames - 1) * stride + 1
    last_start = max(start + 1, end - span + 1)  # the samplers' range is of first frames: every clip fits
    shape = dict(num_frames_per_clip=frames, num_indices_between_frames=stride, policy="repeat_last")
    if clips is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_of_draw or 0)
            batch = clips_at_random_indices(decoder, num_clips=1, sampling_range_start=start,
                                            sampling_range_end=last_start, **shape)
    else:
        if clips == 1:  # the middle of the video, not its first frames
            start = (start + last_start - 1) // 2
            last_start = start + 1
        batch = clips_at_regular_indices(decoder, num_clips=clips, sampling_range_start=start,
                                         sampling_range_end=last_start, **shape)
    return batch.data


@dataclass
class ClipRead:
    """A worker's sample: a clip (training: at random, cropped at a random box and maybe flipped) or ``clips``
    evenly spread clips (evaluation: the model's resize and centre crop) -> uint8 (C, T, S, S) or
    (K, C, T, S, S)."""

    pre: Preprocess
    frames: int
    stride: int
    seed: int
    train: bool
    clips: int = 1
    flip: bool = True

    def __call__(self, source: VideoSource, index: int, epoch: int) -> np.ndarray:
        return self.read(open_video(source), source, index, epoch)

    def read(self, decoder, source: VideoSource, index: int, epoch: int) -> np.ndarray:
        """The same from a decoder already open on ``source.path`` (its segment read from ``source``)."""
        clips = self.crops(decoder, source, index, epoch).to(torch.uint8).numpy()
        return clips[0] if len(clips) == 1 else clips

    def crops(self, decoder, source: VideoSource, index: int, epoch: int) -> Tensor:
        """float (K, C, T, S, S) of whole levels 0..255, on the decoder's device: the sample's clips, cropped."""
        try:
            data = sample_clips(decoder, source.segment, self.frames, self.stride, None if self.train else self.clips,
                                policy_seed(self.seed, epoch, index))
        except (RuntimeError, ValueError, IndexError) as e:
            raise UnreadableVideoError(f"{source.path}: frames could not be decoded ({e})") from None
        height, width = data.shape[-2:]
        flip = False
        if self.train:
            rng = sample_rng(self.seed, epoch, index)
            box: Box = random_resized_box(width, height, rng, scale=VIDEO_CROP_SCALE)
            flip = self.flip and bool(rng.random() < 0.5)
        else:
            box = center_box(width, height, self.pre.resize_size, self.pre.image_size)
        return torch.stack([self._crop(clip, box, flip) for clip in data])

    def _crop(self, clip: Tensor, box: Box, flip: bool) -> Tensor:
        """(T, C, H, W) -> (C, T, S, S): every frame at the same box, flipped alike."""
        frames = resized_crops(list(clip), [box] * len(clip), self.pre.image_size)
        frames = flip_where(frames, torch.full((len(clip),), flip, device=frames.device))
        return frames.round().clamp(0, 255).permute(1, 0, 2, 3)


def pass_source(source: VideoSource, index: int, epoch: int) -> VideoSource:
    """A worker's sample when videos are decoded on the GPU: the video itself, opened by the main process."""
    return source


@dataclass
class DeviceClips:
    """The GPU path's ``finish`` for videos: each video of the batch decoded on the device (NVDEC) and its clips
    drawn and cropped there as ``ClipRead`` does in workers (the same draws), dropping from ``batch`` what cannot be
    decoded; then jitter and normalisation, as ``decoding.NormalizeBatch``."""

    read: ClipRead
    device: torch.device
    jitter: float = 0.0

    def __call__(self, batch: RawBatch, epoch: int) -> Tensor:
        assert isinstance(batch.payloads, list)
        clips, keep = [], []
        for k, (source, index) in enumerate(zip(batch.payloads, batch.indices)):
            try:
                crops = self.read.crops(open_video(source, self.device), source, index, epoch)
            except UnreadableVideoError as e:
                batch.failed.append((index, str(e)))
                continue
            clips.append(crops[0] if len(crops) == 1 else crops)
            keep.append(k)
        batch.indices, batch.labels = [batch.indices[k] for k in keep], batch.labels[keep]
        if not clips:
            return torch.empty(0, device=self.device)
        x = torch.stack(clips).to(self.device)
        return self.read.pre.normalize(jittered(x, self.jitter, self.read.seed, epoch, batch.indices))
