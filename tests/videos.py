"""Videos the tests write: H.264 MP4s whose frames say which they are, and a small video model file."""

import os

import pytest
import torch

from reslab.data.clips import ffmpeg_refusal
from reslab.data.moving import write_video
from reslab.data.preprocess import Clip, Preprocess
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
