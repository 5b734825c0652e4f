"""CIFAR-10/100 by name, through torchvision."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .splits import ArraySplit, Dataset, holdout_validation


def load_cifar(name: str, root: Path, seed: int = 0, hold_out: bool = True) -> Dataset:
    """CIFAR-10/100 through torchvision: read from ``root``, downloaded there when online."""
    from torchvision import datasets  # torch: reslab's data room loads without it

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    try:
        train = cls(str(root), train=True, download=True)
        test = cls(str(root), train=False, download=True)
    except (OSError, RuntimeError) as e:
        raise ValueError(
            f"{name}: not found in {root} and could not be downloaded ({e}). Offline, put the original "
            f"python-version archive's folder in {root}, or pass an image folder as --data."
        ) from e

    def arrays(ds) -> ArraySplit:
        return ArraySplit(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)), np.asarray(ds.targets))

    test_split = arrays(test)
    train_split, val_split = holdout_validation(arrays(train), seed) if hold_out else (arrays(train), test_split)
    return Dataset(name, list(train.classes), train_split, val_split, test_split)
