"""An exported model checked against the original: the same real images through both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.images import open_image
from ..modelfile import ModelInfo

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


class VerificationError(ValueError):
    """An exported model whose outputs differ from the original beyond the tolerance."""


@dataclass
class Agreement:
    images: int
    max_abs_diff: float
    top1_agreement: float

    def line(self) -> str:
        return (f"{self.images} real images: max |logit difference| {self.max_abs_diff:.2e}, "
                f"top-1 agreement {self.top1_agreement:.1%}")


def default_images() -> list[Path]:
    return sorted(p for p in SAMPLES.glob("*") if p.suffix.lower() in (".jpg", ".png"))


def reference_batch(info: ModelInfo, images: list[Path]) -> np.ndarray:
    """The images with their horizontal mirrors, preprocessed as the model file says."""
    if not images:
        raise ValueError("no images to verify the export with: pass --verify-images")
    pre = info.preprocess
    batch = np.stack([pre(open_image(p, pre.in_chans)).numpy() for p in images])
    return np.concatenate([batch, batch[..., ::-1]]).copy()


def compare(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    if candidate.shape != reference.shape:
        raise VerificationError(f"output shape {candidate.shape} differs from the original's {reference.shape}")
    return Agreement(
        images=len(reference),
        max_abs_diff=float(np.abs(reference - candidate).max()),
        top1_agreement=float((reference.argmax(1) == candidate.argmax(1)).mean()),
    )


def check(agreement: Agreement, reference: np.ndarray, rtol: float, what: str) -> None:
    """Fail when logits differ by more than ``rtol`` of the largest logit, or any top-1 changes."""
    limit = rtol * max(1.0, float(np.abs(reference).max()))
    if agreement.max_abs_diff > limit or agreement.top1_agreement < 1.0:
        raise VerificationError(f"{what} does not match the original model: {agreement.line()} "
                                f"(tolerance {limit:.1e} and 100% agreement)")
