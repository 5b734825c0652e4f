"""A network's features: the global average of its last stage's activations (what its classifier reads), of images
seen through the model file's own preprocessing."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from ..data.loaders import SkipLog
from ..data.pipeline import SMALL_IMAGE, make_loader
from ..data.preprocess import Preprocess
from ..data.splits import Split


def pooled(model: nn.Module, x: Tensor) -> Tensor:
    """(N, D) float32: the last stage's activations averaged over space."""
    if not hasattr(model, "forward_features"):
        raise ValueError(f"{type(model).__name__} has no stages to take features from")
    last = next(reversed(model.forward_features(x).values()))
    return last.float().mean(dim=(-2, -1))


@torch.inference_mode()
def batch_features(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, D) and labels (N,) of every batch, in order."""
    model.eval()
    features, labels = [], []
    for x, y in batches:
        features.append(pooled(model, x.to(device, torch.float32)).cpu())
        labels.append(y.cpu())
    if not features:
        raise ValueError("no image to take features of: the split is empty or none of its images could be read")
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def split_features(model: nn.Module, pre: Preprocess, split: Split, device: torch.device, batch_size: int = 256,
                   workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of a split's readable images (each once, resized and centre-cropped as the model's
    preprocessing says; unreadable ones skipped and named)."""
    loader = make_loader(split, pre, batch_size, device, SkipLog(), workers, in_memory=pre.image_size <= SMALL_IMAGE)
    return batch_features(model, loader, device)
