"""From a config to loaders: picks image size, normalisation, preset and the in-memory path."""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .datasets import ArraySplit, Dataset, FileSplit, Split, load_dataset, subset
from .images import open_image
from .loaders import FileLoader, SkipLog, TensorLoader, decode_split
from .preprocess import DATASET_STATS, Preprocess, eval_resize_size
from .transforms import AugmentOptions, BatchAugment, train_transform

SMALL_IMAGE = 64  # images this size or smaller train from memory with the CIFAR preset
Loader = TensorLoader | FileLoader


@dataclass
class DataOptions:
    image_size: int | None
    default_image_size: int  # the model's own, used when the images are large
    in_chans: int
    batch_size: int
    workers: int
    seed: int
    augment: AugmentOptions
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    in_memory: bool | None
    reference: Preprocess | None = None  # what the starting weights were trained with: keep its statistics


@dataclass
class DataBundle:
    dataset: Dataset
    preprocess: Preprocess
    train: Loader
    val: Loader
    in_memory: bool
    skipped: SkipLog


def probe_image_size(split: Split, count: int = 32) -> int:
    """The median short side of the first images of a split."""
    if isinstance(split, ArraySplit):
        return int(min(split.images.shape[2:]))
    sides = []
    for path in split.paths[:count]:
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
        except OSError:
            continue
    return int(statistics.median(sides)) if sides else SMALL_IMAGE + 1


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images, scaled to [0, 1]."""
    x = images.astype(np.float64) / 255.0
    return tuple(x.mean(axis=(0, 2, 3)).tolist()), tuple(x.std(axis=(0, 2, 3)).tolist())


def known_stats(dataset: Dataset, opts: DataOptions) -> tuple[tuple, tuple] | None:
    """Statistics given, or those of the starting weights, or the dataset's published ones."""
    if opts.mean is not None and opts.std is not None:
        return tuple(opts.mean), tuple(opts.std)
    if opts.reference is not None:
        return opts.reference.mean, opts.reference.std
    return DATASET_STATS.get(dataset.name)


def resolve_stats(dataset: Dataset, opts: DataOptions, sample: np.ndarray | None) -> tuple[tuple, tuple]:
    known = known_stats(dataset, opts)
    if known is None:
        assert sample is not None
        return channel_stats(sample)
    mean, std = known
    if len(mean) == 3 and opts.in_chans == 1:  # grayscale: the luminance-weighted colour statistics
        weights = (0.299, 0.587, 0.114)
        return (float(np.dot(mean, weights)),), (float(np.dot(std, weights)),)
    return mean, std


def resize_for(image_size: int, reference: Preprocess | None) -> int:
    """The evaluation resize: the starting weights' own resize/crop ratio where there are any."""
    if reference is None or image_size <= SMALL_IMAGE:
        return eval_resize_size(image_size)
    return round(image_size * reference.resize_size / reference.image_size)


def _stats_sample(split: Split, pre: Preprocess, count: int = 500) -> np.ndarray:
    if isinstance(split, ArraySplit):
        return split.images[:: max(1, len(split) // count)]
    step = max(1, len(split) // count)
    sub = FileSplit(split.paths[::step], split.labels[::step])
    return decode_split(sub, pre, SkipLog()).images


def make_loader(
    split: Split,
    pre: Preprocess,
    batch_size: int,
    device: torch.device,
    skipped: SkipLog,
    workers: int = 2,
    in_memory: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Loader:
    """An evaluation loader: no augmentation, the given order, every image once."""
    if in_memory:
        if isinstance(split, FileSplit):
            split = decode_split(split, pre, skipped)
        return TensorLoader(split, pre, batch_size, device, seed=seed, rank=rank, world_size=world_size)
    if isinstance(split, ArraySplit):
        raise ValueError("an in-memory dataset needs in_memory=True")
    return FileLoader(
        split, pre, pre.open, batch_size, skipped, workers=workers, seed=seed, rank=rank,
        world_size=world_size, pin_memory=device.type == "cuda",
    )


def build_data(
    dataset: Dataset, opts: DataOptions, device: torch.device, rank: int = 0, world_size: int = 1
) -> DataBundle:
    native = probe_image_size(dataset.train)
    image_size = opts.image_size or (native if native <= SMALL_IMAGE else opts.default_image_size)
    in_memory = opts.in_memory if opts.in_memory is not None else image_size <= SMALL_IMAGE
    if isinstance(dataset.train, ArraySplit) and not in_memory:
        raise ValueError(f"{dataset.name} is an in-memory dataset; in_memory cannot be false")
    augment = opts.augment
    if augment.preset == "auto":
        augment = AugmentOptions(**{**vars(augment), "preset": "cifar" if image_size <= SMALL_IMAGE else "imagenet"})

    placeholder = Preprocess(image_size, eval_resize_size(image_size), (0.0,) * opts.in_chans,
                             (1.0,) * opts.in_chans, opts.in_chans)
    skipped = SkipLog()
    train_split, val_split = dataset.train, dataset.val
    if in_memory:
        # decoded once at the evaluation geometry; normalisation happens per batch
        if isinstance(train_split, FileSplit):
            train_split = decode_split(train_split, placeholder, skipped)
        if isinstance(val_split, FileSplit):
            val_split = decode_split(val_split, placeholder, skipped)
    sample = _stats_sample(train_split, placeholder) if known_stats(dataset, opts) is None else None
    mean, std = resolve_stats(dataset, opts, sample)
    interpolation = opts.reference.interpolation if opts.reference else "bilinear"
    pre = Preprocess(image_size, resize_for(image_size, opts.reference), mean, std, opts.in_chans, interpolation)

    common = dict(seed=opts.seed, rank=rank, world_size=world_size)
    global_batch = opts.batch_size * world_size
    if world_size > 1 and len(train_split) < global_batch:
        raise ValueError(f"the training split has {len(train_split)} images, fewer than one global batch "
                         f"({opts.batch_size} per process x {world_size} processes): lower --batch-size")
    drop_last = len(train_split) > global_batch if world_size == 1 else True
    if in_memory:
        assert isinstance(train_split, ArraySplit)
        train: Loader = TensorLoader(train_split, pre, opts.batch_size, device, augment=BatchAugment(augment, pre),
                                     shuffle=True, drop_last=drop_last, **common)
    else:
        assert isinstance(train_split, FileSplit)
        # training decodes at full size: random crops may zoom into a small part of the image
        full_decode = functools.partial(open_image, channels=pre.in_chans)
        train = FileLoader(train_split, train_transform(augment, pre), full_decode, opts.batch_size, skipped,
                           workers=opts.workers, shuffle=True, drop_last=drop_last,
                           pin_memory=device.type == "cuda", **common)
    val = make_loader(val_split, pre, opts.batch_size, device, skipped, opts.workers, in_memory, **common)
    return DataBundle(dataset, pre, train, val, in_memory, skipped)


def describe(bundle: DataBundle) -> str:
    ds = bundle.dataset
    test = f", test {len(ds.test)}" if ds.test is not None else ""
    where = "in memory, batch augmentation" if bundle.in_memory else "from disk"
    val = "evaluating the test split" if ds.val is ds.test else f"val {len(ds.val)}"
    return (f"data {ds.name}: {len(ds.classes)} classes, train {len(ds.train)}, {val}{test}; "
            f"{bundle.preprocess.image_size}px, {where}")




def model_split(data: str, classes: list[str], split: str, cache_dir: Path, seed: int = 0,
                split_file: Path | None = None, limit: int | None = None) -> Split:
    """``split`` of ``data`` for a model trained on ``classes`` (checked), at most ``limit`` images
    drawn at random with ``seed``."""
    dataset = load_dataset(data, cache_dir, seed, split_file)
    chosen = {"val": dataset.val, "test": dataset.test, "train": dataset.train}.get(split)
    if chosen is None:
        raise ValueError(f"{data}: has no {split!r} split")
    if dataset.classes != classes:
        raise ValueError(f"{data}: classes {dataset.classes} differ from the model's {classes}")
    if limit is not None and limit < len(chosen):
        picked = sorted(np.random.default_rng(seed).permutation(len(chosen))[:limit].tolist())
        chosen = subset(chosen, picked)
    return chosen
