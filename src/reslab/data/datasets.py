"""Datasets by name (cifar10, cifar100, ``hf:`` data) or by path (a folder of class sub-folders, a multi-label
index, an ``.npz`` or a pack): each kind has its module, and this one picks it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..paths import data_cache
from .arrays import load_arrays
from .cifar import load_cifar
from .folders import load_folder
from .hf import load_hf
from .multilabel import load_multilabel
from .splits import Dataset
from .videos import load_videos


def load_dataset(data: str, cache_dir: str | Path | None, seed: int = 0, split_file: Path | None = None,
                 eval_split: str = "val", columns: tuple[str | None, str | None] = (None, None),
                 hold_out: bool | None = None, task: str = "multiclass") -> Dataset:
    """``eval_split="test"``: the test split is evaluated in place of val, and no training images
    are held out for validation (how test-accuracy recipes and time-to-accuracy benchmarks train).
    ``columns``: the image and label columns of ``hf:`` data (None: found by their feature types).
    ``hold_out=False``: no training images held out whatever the eval split (val is then the test split,
    or None where there is neither). ``task="multilabel"``: an index of labels beside the images
    (``data.multilabel``); ``task="video"``: a folder of class folders of videos, or a CSV index (``data.videos``)."""
    hold_out = eval_split == "val" if hold_out is None else hold_out
    cache_dir = data_cache(cache_dir)
    if task == "multilabel":
        dataset = load_multilabel(data, seed, split_file, hold_out)
    elif task == "video":
        dataset = load_videos(data, seed, split_file, hold_out)
    elif data.startswith("hf:"):
        dataset = load_hf(data, cache_dir, seed, hold_out, *columns)
    elif data in ("cifar10", "cifar100"):
        dataset = load_cifar(data, cache_dir / data, seed, hold_out)
    elif data.endswith(".npz"):
        dataset = load_arrays(Path(data), seed, hold_out)
    else:
        dataset = load_folder(Path(data), seed=seed, split_file=split_file, hold_out=hold_out)
    if eval_split == "test":
        if dataset.test is None:
            raise ValueError(f"{data}: eval_split 'test' needs a test split (a test/ folder), and there is none")
        dataset = replace(dataset, val=dataset.test)
    return dataset
