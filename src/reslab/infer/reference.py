"""The real images a lower precision or an export is checked on, preprocessed as the model says."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.preprocess import Preprocess

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


def default_images() -> list[Path]:
    """The photos shipped in ``samples/`` (a source checkout); empty in an installed wheel."""
    return sorted(p for p in SAMPLES.glob("*") if p.suffix.lower() in (".jpg", ".png"))


def reference_batch(pre: Preprocess, images: list[Path], frames: int | None = None) -> np.ndarray:
    """The images with their horizontal mirrors, preprocessed as the model file says; for a video model
    (``frames``), each as a clip of that many frames of the photo (real pixels, as a still camera films them)."""
    if not images:
        raise ValueError("no images to verify with: pass --verify-images")
    batch = pre.batch([pre.open(p) for p in images])
    batch = np.concatenate([batch, batch[..., ::-1]])
    return np.repeat(batch[:, :, None], frames, axis=2) if frames else batch.copy()
