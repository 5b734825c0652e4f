"""Video: 3D networks from 2D ones, clips decoded by TorchCodec from generated MP4s, training on clips."""

import os

import numpy as np
import pytest
import torch

from reslab.data.clips import ClipRead, ffmpeg_refusal, sample_clips
from reslab.data.moving import write_video
from reslab.data.preprocess import Preprocess
from reslab.data.splits import VideoSource
from reslab.models import ModelSpec, build_model, create_model
from reslab.models.inflate import inflate

# CI sets RESLAB_REQUIRE_FFMPEG: there a missing FFmpeg fails these tests instead of skipping them
needs_ffmpeg = pytest.mark.skipif(ffmpeg_refusal() is not None and not os.environ.get("RESLAB_REQUIRE_FFMPEG"),
                                  reason=str(ffmpeg_refusal()))
FP32 = 1e-4  # fp32 sums in another order (3D kernels of T taps, each 1/T of the 2D one): relative to the logits


@pytest.mark.parametrize("arch,size", [("resnet18", 64), ("resnet50", 64), ("resnet20", 32)])
def test_a_clip_of_one_frame_repeated_gives_the_2d_logits(arch, size):
    torch.manual_seed(0)
    flat = build_model(ModelSpec(arch, num_classes=7)).eval()
    deep = inflate(flat).eval()
    with torch.no_grad():  # trained-looking BatchNorm statistics, so that eval mode does something
        for m in flat.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        deep = inflate(flat).eval()
        image = torch.randn(2, 3, size, size)
        expected = flat(image)
        got = deep(image[:, :, None].expand(-1, -1, 4, -1, -1))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=FP32 * expected.abs().max().item())
    assert all(p.dim() in (1, 2, 5) for p in deep.parameters())  # every convolution is 3D


def test_2d_weights_load_into_the_3d_network_by_name(tmp_path):
    from reslab.modelfile import ModelInfo, save_model_file

    torch.manual_seed(1)
    flat = build_model(ModelSpec("resnet20", num_classes=10)).eval()
    pre = Preprocess(32, 32, (0.5,) * 3, (0.25,) * 3)
    save_model_file(tmp_path / "flat.safetensors", flat, ModelInfo(ModelSpec("resnet20", 10), [str(i) for i in
                                                                                               range(10)], pre))
    deep = create_model("resnet20-3d", num_classes=10, weights=tmp_path / "flat.safetensors").eval()
    image = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected, got = flat(image), deep(image[:, :, None].expand(-1, -1, 5, -1, -1))
    assert torch.allclose(got, expected, atol=FP32 * expected.abs().max().item())
    assert deep.layer1[0].conv1.weight.shape == (16, 16, 3, 3, 3)  # the blocks' first convolutions see 3 frames


def test_video_networks_take_clips():
    clip = torch.randn(2, 3, 4, 32, 32)
    for arch in ("r3d_18", "mc3_18", "r2plus1d_18", "resnet20-3d", "resnet20-frames"):
        model = build_model(ModelSpec(arch, num_classes=5)).eval()
        with torch.no_grad():
            assert model(clip).shape == (2, 5), arch
    frames = build_model(ModelSpec("resnet20-frames", num_classes=5)).eval()
    with torch.no_grad():  # per-frame logits averaged: the order of the frames does not matter
        assert torch.allclose(frames(clip), frames(clip.flip(2)), atol=1e-5)


def _counting_video(path, frames=20, size=32, fps=10):
    """Frame i is flat grey at level 10 * i: which frame a decoder returned can be read off its pixels."""
    levels = torch.arange(frames, dtype=torch.uint8)[:, None, None, None] * 10
    return write_video(levels.expand(frames, 3, size, size).clone(), path, fps)


def _levels(clip: torch.Tensor) -> list[int]:
    return [round(float(f.float().mean()) / 10) for f in clip]


@needs_ffmpeg
def test_clips_are_the_frames_asked_for(tmp_path):
    from reslab.data.clips import open_video

    video = _counting_video(tmp_path / "count.mp4")
    decoder = open_video(VideoSource(video))
    assert decoder.metadata.num_frames == 20
    spread = sample_clips(decoder, None, frames=4, stride=2, clips=2)
    assert spread.shape == (2, 4, 3, 32, 32)
    assert [_levels(c) for c in spread] == [[0, 2, 4, 6], [13, 15, 17, 19]]
    middle = sample_clips(decoder, None, frames=4, stride=2, clips=1)
    assert _levels(middle[0]) == [6, 8, 10, 12]  # one evaluation clip: from the middle of the video
    segment = sample_clips(decoder, (1.0, 2.0), frames=3, stride=1, clips=1)  # seconds 1-2: frames 10..19
    assert all(10 <= level < 20 for level in _levels(segment[0]))
    short = sample_clips(decoder, None, frames=15, stride=2, clips=1)  # longer than the video: the last repeated
    assert _levels(short[0]) == list(range(0, 20, 2)) + [18] * 5
    drawn = [_levels(sample_clips(decoder, None, 4, 2, None, seed_of_draw=s)[0]) for s in (3, 3, 4, 5, 6)]
    assert drawn[0] == drawn[1] and len({tuple(d) for d in drawn}) > 1  # seeded: the same draw, others differ
    assert all(np.diff(d).tolist() == [2, 2, 2] for d in drawn)


@needs_ffmpeg
def test_a_clip_is_cropped_and_flipped_alike_in_every_frame(tmp_path, photos):
    from PIL import Image

    photo = torch.from_numpy(np.array(Image.open(photos["chelsea"]).convert("RGB"))).permute(2, 0, 1)
    still = photo[None].expand(6, -1, -1, -1).clone()  # the camera does not move
    video = write_video(still, tmp_path / "still.mp4")
    pre = Preprocess(48, 55, (0.5,) * 3, (0.25,) * 3)
    read = ClipRead(pre, frames=4, stride=1, seed=0, train=True)
    clip = torch.from_numpy(read(VideoSource(video), 3, 1)).float()
    assert clip.shape == (3, 4, 48, 48)
    assert (clip - clip[:, :1]).abs().mean() < 2.0  # the same box in every frame (H.264 noise aside)
    again = torch.from_numpy(read(VideoSource(video), 3, 1)).float()
    assert torch.equal(clip, again)
    other = [torch.from_numpy(read(VideoSource(video), i, 1)).float() for i in range(8)]
    assert any((o - clip).abs().mean() > 10 for o in other)  # other samples: other boxes or flips


@needs_ffmpeg
def test_a_broken_video_is_skipped_and_named(tmp_path):
    import warnings

    from reslab.data.clips import ClipBatch
    from reslab.data.loaders import SkipLog
    from reslab.data.splits import VideoSplit
    from reslab.data.streams import StreamLoader

    good = _counting_video(tmp_path / "a" / "good.mp4")
    broken = tmp_path / "b" / "broken.mp4"
    broken.parent.mkdir()
    broken.write_bytes(good.read_bytes()[:300])  # the header and nothing more
    noise = tmp_path / "b" / "noise.mp4"
    noise.write_bytes(b"not a video at all" * 10)
    pre = Preprocess(32, 36, (0.5,) * 3, (0.25,) * 3)
    split = VideoSplit([good, broken, noise], [0, 1, 1], [None] * 3)
    skipped = SkipLog("video")
    loader = StreamLoader(split, ClipRead(pre, 4, 2, 0, train=False), ClipBatch(pre, torch.device("cpu")), 3, skipped,
                          torch.device("cpu"), workers=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(1, 3, 4, 32, 32)]
    assert set(skipped.files) == {str(broken), str(noise)}
    assert any("skipping unreadable video" in str(w.message) and "noise.mp4" in str(w.message) for w in caught)
