"""Precisions, and how a lower one is checked against fp32: the tolerances, stated once.

- **fp32**: an export or another runtime computes the same products in another order. Each float32
  rounding is within 2^-24 relative; over a ResNet the logits move by about 1e-5 of the largest one.
  ``FP32_RTOL`` (1e-3 of the largest logit) is a hundred times that, and still catches any real error.
- **bf16**: 8 significant bits, so each rounding is within 2^-9 relative (2^-8 between neighbours).
  A network rounds its activations once per weighted layer; independent roundings add like a random
  walk, about sqrt(L) x 2^-8 of the largest logit after L layers (ResNet-20, L = 20: 1.7%, as measured
  on real images). ``bf16_rtol`` allows three times that (ResNet-20: 5.2%, ResNet-50: 8.6%).
- **int8**: logits move by whole quantisation steps; it is judged by top-1 on a validation split
  (``reslab quantize --max-drop``), not by a logit tolerance.
Every lower precision must also keep every top-1 of the verification images (100% agreement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PRECISIONS = ("fp32", "bf16", "int8")
CHOICES = ("auto", *PRECISIONS)
FP32_RTOL = 1e-3
BF16_UNIT = 2.0**-8


def bf16_rtol(weighted_layers: int) -> float:
    return 3 * math.sqrt(weighted_layers) * BF16_UNIT


def check_choice(precision: str) -> str:
    if precision not in CHOICES:
        raise ValueError(f"--precision {precision!r}: choose one of {', '.join(CHOICES)}")
    return precision


class VerificationError(ValueError):
    """Outputs that differ from fp32 (or from the original model) beyond the tolerance."""


@dataclass
class Agreement:
    images: int
    max_abs_diff: float
    top1_agreement: float
    tolerance: float = 0.0  # the largest |logit difference| allowed
    precision: str = "fp32"

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.top1_agreement == 1.0

    def line(self) -> str:
        return (f"{self.images} real images: max |logit difference| {self.max_abs_diff:.2e} (tolerance "
                f"{self.tolerance:.1e}), top-1 agreement {self.top1_agreement:.1%}")


def compare(reference: np.ndarray, candidate: np.ndarray, rtol: float, precision: str = "fp32") -> Agreement:
    """How far ``candidate`` logits are from ``reference``; the tolerance is ``rtol`` of the largest logit."""
    if candidate.shape != reference.shape:
        raise VerificationError(f"output shape {candidate.shape} differs from the reference's {reference.shape}")
    return Agreement(
        images=len(reference),
        max_abs_diff=float(np.abs(reference - candidate).max()),
        top1_agreement=float((reference.argmax(1) == candidate.argmax(1)).mean()),
        tolerance=rtol * max(1.0, float(np.abs(reference).max())),
        precision=precision,
    )


def check(agreement: Agreement, what: str) -> None:
    """Raise unless the logits stay within the tolerance and every top-1 is kept."""
    if not agreement.passed:
        raise VerificationError(f"{what} does not match the fp32 model: {agreement.line()}; "
                                f"100% top-1 agreement is required")
