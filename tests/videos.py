"""Videos the tests write: H.264 MP4s whose frames say which they are, and a small video model file."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.data.clips import ffmpeg_refusal
from reslab.data.moving import write_clip_set, write_video
from reslab.data.preprocess import Clip, Preprocess
from reslab.data.sample import SAMPLE_PACK
from reslab.modelfile import ModelInfo, save_model_file
from reslab.models import ModelSpec, build_model

# CI sets RESLAB_REQUIRE_FFMPEG: there a missing FFmpeg fails these tests instead of skipping them
needs_ffmpeg = pytest.mark.skipif(ffmpeg_refusal() is not None and not os.environ.get("RESLAB_REQUIRE_FFMPEG"),
                                  reason=str(ffmpeg_refusal()))


def counting_video(path, frames=20, size=32, fps=10):
    """Frame i is flat grey at level 10 * i: which frame a decoder returned can be read off its pixels."""
    levels = torch.arange(frames, dtype=torch.uint8)[:, None, None, None] * 10
    return write_video(levels.expand(frames, 3, size, size).clone(), path, fps)


def video_model_file(tmp_path, classes=("left", "right")):
    torch.manual_seed(2)
    spec = ModelSpec("resnet20-3d", num_classes=len(classes))
    model = build_model(spec).eval()
    info = ModelInfo(spec, list(classes), Preprocess(32, 36, (0.5,) * 3, (0.25,) * 3), task="video",
                     clip=Clip(frames=4, stride=2, clips=2))
    return save_model_file(tmp_path / "video.safetensors", model, info)


def sample_photos(split: str, count: int) -> list[tuple[torch.Tensor, str]]:
    """``count`` photos of the shipped CIFAR-10 sample's split, spread over it, as uint8 (C, H, W)."""
    z = np.load(SAMPLE_PACK)
    data, offsets = z[f"{split}_jpeg"], z[f"{split}_offsets"]
    step = len(offsets) // count
    return [(torch.from_numpy(np.array(Image.open(io.BytesIO(data[offsets[i] : offsets[i + 1]].tobytes()))
                                       .convert("RGB"))).permute(2, 0, 1).contiguous(), "any")
            for i in range(0, step * count, step)]


def motion_clips(out: Path, train: int, val: int, test: int, frames: int = 8) -> Path:
    """The motion task of `reslab bench video`: each sample photo panned left and panned right (the class)."""
    photos = {"train": sample_photos("train", train), "val": sample_photos("val", val),
              "test": sample_photos("test", test)}
    return write_clip_set(photos, out, "motion", frames=frames, size=32)
