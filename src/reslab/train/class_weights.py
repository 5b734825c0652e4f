"""Loss weights per class for imbalanced data: inverse frequency, or Cui et al.'s effective number of
samples (CVPR 2019), whose weight grows less than linearly as a class gets rarer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

CLASS_WEIGHTS = ("none", "balanced", "effective")


def class_weights(counts: Sequence[int], mode: str, beta: float = 0.999) -> Tensor | None:
    """Weights for ``cross_entropy(weight=...)``, averaging 1 over the classes that have images.

    balanced: n / (classes * count), as scikit-learn's ``class_weight="balanced"``.
    effective: (1 - beta) / (1 - beta ** count), then scaled to the same mean.
    A class without training images gets 0 (it is never a target)."""
    if mode not in CLASS_WEIGHTS:
        raise ValueError(f"config field 'class_weights': {mode!r}, expected one of {', '.join(CLASS_WEIGHTS)}")
    if mode == "none":
        return None
    n = torch.as_tensor(counts, dtype=torch.float64)
    present = n > 0
    count = n.clamp(min=1)
    raw = n.sum() / count if mode == "balanced" else (1.0 - beta) / (1.0 - torch.pow(beta, count))
    raw = torch.where(present, raw, torch.zeros_like(raw))
    return (raw * present.sum() / raw.sum()).float()
