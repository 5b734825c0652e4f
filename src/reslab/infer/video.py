"""Predictions for a video model: the top-k of a whole video (the mean probability of clips spread evenly over
it), and with ``segments`` a timeline, the top-k of each window of that many seconds."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..data.clips import ClipRead, open_video
from ..data.images import UnreadableImageError
from ..data.options import ClipOptions
from ..data.splits import VideoSource
from ..modelfile import ModelInfo
from .backends import Backend


def video_probabilities(backend: Backend, info: ModelInfo, source: VideoSource, decoder=None) -> np.ndarray:
    """The mean probability (classes,) of the model's evaluation clips of ``source`` (a file or a window of it);
    ``decoder``: one already open on the file (each window of a timeline reads the same one)."""
    from .predictor import probabilities_of  # the predictor imports this module for its video models

    batch = info.preprocess.normalize(evaluation_clips(info, source, decoder))
    return probabilities_of(backend.run(batch), info).mean(0)


def evaluation_clips(info: ModelInfo, source: VideoSource, decoder=None) -> np.ndarray:
    """uint8 (K, C, T, H, W): the model's K evaluation clips of ``source``, spread evenly, as the model sees them."""
    clip = info.clip or ClipOptions().clip()  # a file without its clip record: the training defaults
    read = ClipRead(info.preprocess, clip.frames, clip.stride, 0, train=False, clips=clip.clips)
    clips = read.read(decoder or open_video(source), source, 0, 0)
    return clips if clips.ndim == 5 else clips[None]


def predict_video(backend: Backend, info: ModelInfo, path: Path, segments: float | None = None) -> dict:
    """``{"probabilities": (classes,), "segments": [(start, end, probabilities)]}`` of one video file."""
    if segments is not None and segments <= 0:
        raise ValueError(f"--segments {segments}: a window is a positive number of seconds")
    decoder = open_video(VideoSource(path))
    duration = float(decoder.metadata.duration_seconds or 0.0)
    if segments is None:
        return {"probabilities": video_probabilities(backend, info, VideoSource(path), decoder), "segments": []}
    windows = [(i * segments, min(duration, (i + 1) * segments)) for i in range(max(1, math.ceil(duration / segments)))]
    timeline = [(start, end, video_probabilities(backend, info, VideoSource(path, (start, end)), decoder))
                for start, end in windows if end > start]
    return {"probabilities": np.mean([p for *_, p in timeline], axis=0), "segments": timeline}


def readable_video(backend: Backend, info: ModelInfo, path: Path, segments: float | None) -> dict | str:
    try:
        return predict_video(backend, info, path, segments)
    except UnreadableImageError as e:
        return str(e)
