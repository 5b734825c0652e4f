"""Where end-to-end prediction time goes: read, decode, resize/crop, normalise, network, postprocess.

Each stage of ``Predictor.predict`` is run on its own over one batch, with the predictor's own decode
threads, and timed in alternating rounds; the table gives milliseconds per image and each stage's
share. Phone-camera photos are made here from real ones: re-encoded as 12-megapixel JPEGs
(4000x3000, quality 90, 4:2:0), as a phone writes them.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..infer.predictor import Predictor, softmax

PHONE_SIZE = (4000, 3000)
STAGES = ("read", "decode", "resize/crop", "normalise", "network", "postprocess")


def phone_camera_jpegs(images: list[bytes], size: tuple[int, int] = PHONE_SIZE) -> list[bytes]:
    """Each image resized to 12 megapixels (landscape or portrait as it was) and saved as a JPEG."""
    out = []
    for data in images:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        target = size if img.width >= img.height else size[::-1]
        buffer = io.BytesIO()
        img.resize(target, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90, subsampling="4:2:0")
        out.append(buffer.getvalue())
    return out


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def stage_times(predictor: Predictor, blobs: list[bytes], rounds: int = 5) -> dict[str, float]:
    """Median milliseconds per image of each stage over ``blobs`` (one batch)."""
    pre = predictor.info.preprocess
    times: dict[str, list[float]] = {stage: [] for stage in STAGES}
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / f"{i}.jpg" for i in range(len(blobs))]
        for f, data in zip(files, blobs):
            f.write_bytes(data)
        for _ in range(rounds):
            t, data = _timed(lambda: predictor._map(Path.read_bytes, files))
            times["read"].append(t)
            t, decoded = _timed(lambda data=data: predictor._map(pre.open, data))
            times["decode"].append(t)
            t, cropped = _timed(lambda decoded=decoded: predictor._map(pre.geometry, decoded))
            times["resize/crop"].append(t)
            t, batch = _timed(lambda cropped=cropped: pre.normalize(np.stack(cropped)))
            times["normalise"].append(t)
            t, logits = _timed(lambda batch=batch: predictor.backend.run(batch))
            times["network"].append(t)
            t, _ = _timed(lambda logits=logits: predictor.postprocess(softmax(logits)))
            times["postprocess"].append(t)
    return {stage: 1000 * statistics.median(t) / len(blobs) for stage, t in times.items()}


def print_stage_table(title: str, stages: dict[str, float], end_to_end_ms: float, network_ms: float) -> None:
    total = sum(stages.values())
    print(title)
    print(f"{'stage':<13}{'ms/image':>10}{'share':>8}")
    for stage, ms in stages.items():
        print(f"{stage:<13}{ms:>10.2f}{ms / total:>8.0%}")
    print(f"{'sum':<13}{total:>10.2f}   (end to end measured: {end_to_end_ms:.2f} ms/image; network alone "
          f"{network_ms:.2f}: end to end runs at {network_ms / end_to_end_ms:.2f} of the network-alone throughput)")
