"""The multi-label loss: a binary cross-entropy per label on its logit (``BCEWithLogits``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

POS_WEIGHTS = ("none", "balanced")
MAX_POS_WEIGHT = 100.0  # a label on 1 image in 10,000 would otherwise weigh 10,000 times its negatives


def pos_weights(counts: Sequence[int], images: int, mode: str) -> Tensor | None:
    """``BCEWithLogits``' ``pos_weight``: balanced weighs each label's positive term by its negatives /
    positives among the training images (capped), so that both sides weigh alike; 1 for a label with none."""
    if mode not in POS_WEIGHTS:
        raise ValueError(f"config field 'pos_weight': {mode!r}, expected one of {', '.join(POS_WEIGHTS)}")
    if mode == "none":
        return None
    positives = torch.as_tensor(counts, dtype=torch.float64)
    ratio = torch.where(positives > 0, (images - positives) / positives.clamp(min=1), torch.ones_like(positives))
    return ratio.clamp(min=1.0 / MAX_POS_WEIGHT, max=MAX_POS_WEIGHT).float()


def smoothed(targets: Tensor, label_smoothing: float) -> Tensor:
    """Label smoothing of yes/no targets: 1 -> 1 - eps/2 and 0 -> eps/2."""
    targets = targets.float()
    return targets * (1 - label_smoothing) + label_smoothing / 2 if label_smoothing else targets


def multilabel_loss(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0,
                    pos_weight: Tensor | None = None) -> Tensor:
    """The mean over images and labels of each label's binary cross-entropy."""
    return F.binary_cross_entropy_with_logits(logits, smoothed(targets, label_smoothing), pos_weight=pos_weight)


def training_hits(logits: Tensor, targets: Tensor) -> Tensor:
    """Images answered right in training: top-1 for single labels, every label right at 0.5 (exact
    match) for multi-hot targets."""
    if targets.ndim == 2:
        return ((logits > 0) == targets.bool()).all(1).sum()
    return (logits.argmax(1) == targets).sum()
