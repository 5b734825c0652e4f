"""An ``.npz`` of images per split, decoded arrays or encoded JPEG/PNG bytes; a ``reslab pack`` is handed to
``pack.py``."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .images import open_image
from .pack import is_pack, load_pack
from .splits import ArraySplit, Dataset, holdout_validation


def _decode_pack(path: Path, blob: np.ndarray, offsets: np.ndarray, name: str) -> np.ndarray:
    """JPEG/PNG bytes laid end to end -> uint8 (N, H, W, C); all images must share one size."""
    def decode(i: int) -> np.ndarray:  # an unreadable image raises an error naming the pack, split and index
        return np.asarray(open_image(blob[offsets[i] : offsets[i + 1]].tobytes(), name=f"{path} {name}[{i}]"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(pool.map(decode, range(len(offsets) - 1)))
    if len({im.shape for im in images}) > 1:
        raise ValueError(f"{path}: the {name} images differ in size; use an image folder for such data")
    return np.stack(images)


def load_arrays(path: Path, seed: int = 0, hold_out: bool = True) -> Dataset:
    """An ``.npz`` of images per split ``train``, optional ``val`` and ``test``, each either decoded
    (``x_<split>``: uint8 (N, H, W, C) or (N, H, W)) or encoded (``<split>_jpeg`` bytes end to end with
    ``<split>_offsets``), with labels ``y_<split>`` and optional ``classes``: CIFAR-10 as arrays, or
    packed as JPEGs as in reslab's shipped sample."""
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    if is_pack(arrays):
        return load_pack(path, arrays, seed, hold_out)

    def split(name: str) -> ArraySplit | None:
        if f"{name}_jpeg" in arrays.files and f"{name}_offsets" in arrays.files:
            images = _decode_pack(path, arrays[f"{name}_jpeg"], arrays[f"{name}_offsets"], name)
        elif f"x_{name}" in arrays.files:
            images = arrays[f"x_{name}"]
        else:
            return None
        if f"y_{name}" not in arrays.files:
            raise ValueError(f"{path}: has {name} images but no y_{name} labels")
        labels = arrays[f"y_{name}"].astype(np.int64)
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
            raise ValueError(f"{path}: x_{name} must be uint8 (N, H, W, C) or (N, H, W) with one label per image, "
                             f"got {images.dtype} {images.shape} and {len(labels)} labels")
        images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        return ArraySplit(np.ascontiguousarray(images), labels)

    train, val, test = split("train"), split("val"), split("test")
    if train is None:
        raise ValueError(f"{path}: no training images (x_train, or train_jpeg + train_offsets; "
                         f"found {', '.join(arrays.files)})")
    count = int(train.labels.max()) + 1
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays.files else [str(i) for i in range(count)]
    if val is None:
        train, val = holdout_validation(train, seed) if hold_out else (train, test)
    return Dataset(path.stem, classes, train, val, test)
