"""From a config to loaders: picks image size, normalisation, preset and the in-memory path."""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..hardware import default_workers
from .augmentations import not_run_by
from .clips import ClipRead, DeviceClips, ffmpeg_refusal, nvdec_refusal, pass_source
from .datasets import load_dataset
from .decode import gpu_decode_refusal
from .decoding import DeviceCrops, EvalGeometry, NormalizeBatch, ReadEncoded, TrainCrops, per_image_transform, to_device
from .loaders import SkipLog, TensorLoader, decode_split
from .options import AugmentOptions, ClipOptions
from .preprocess import DATASET_STATS, IMAGENET_MEAN, IMAGENET_STD, Clip, Preprocess, eval_resize_size
from .sampling import SAMPLERS, balanced_weights
from .splits import ArraySplit, Dataset, EncodedSplit, FileSplit, PackSplit, Split, VideoSplit, subset
from .streams import StreamLoader
from .transforms import BatchAugment

SMALL_IMAGE = 64  # images this size or smaller train from memory with the CIFAR preset
DECODE_CHOICES = ("auto", "gpu", "cpu")
Loader = TensorLoader | StreamLoader


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
    decode: str = "auto"  # auto | gpu | cpu: where JPEGs from disk are decoded (auto: on the GPU when training on one)
    sampler: str = "none"  # none | balanced: draw training images with replacement, each class equally often
    clip: ClipOptions | None = None  # videos: how clips are drawn


@dataclass
class DataBundle:
    dataset: Dataset
    preprocess: Preprocess
    train: Loader
    val: Loader
    in_memory: bool
    skipped: SkipLog
    path: str = "memory"  # memory | gpu | cpu | per-image: how training images are decoded and augmented
    class_counts: list[int] = field(default_factory=list)  # training images per class


def probe_image_size(split: Split, count: int = 32) -> int:
    """The median short side of the first images of a split."""
    if isinstance(split, ArraySplit):
        return int(min(split.images.shape[2:]))
    sides = []
    for i in range(min(count, len(split))):
        source = split.source(i)
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                sides.append(min(img.size))
        except OSError:
            continue
    return int(statistics.median(sides)) if sides else SMALL_IMAGE + 1


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images, scaled to [0, 1]: exact, from each channel's
    histogram of the 256 values (no float copy of the images: 60x faster than one)."""
    values = np.arange(256) / 255.0
    counts = np.stack([np.bincount(images[:, c].reshape(-1), minlength=256) for c in range(images.shape[1])])
    mean = counts @ values / counts.sum(axis=1)
    var = (counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / counts.sum(axis=1)
    return tuple(mean.tolist()), tuple(np.sqrt(var).tolist())


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
    sub = subset(split, list(range(0, len(split), max(1, len(split) // count))))
    return decode_split(sub, pre, SkipLog()).images


def checked_decode(decode: str) -> None:
    if decode not in DECODE_CHOICES:
        raise ValueError(f"config field 'decode': {decode!r}, expected one of {', '.join(DECODE_CHOICES)}")


def training_path(decode: str, device: torch.device, augment: AugmentOptions) -> str:
    """How images from disk are decoded and augmented for training: the first of the paths that ``decode``
    allows (``auto``: gpu where it can run, then cpu, then per-image) that runs every augmentation asked for
    (``augmentations.AUGMENTATIONS``)."""
    checked_decode(decode)
    refusal = gpu_decode_refusal(device)
    if decode == "gpu":
        missing = not_run_by("gpu", augment)
        if missing:
            raise ValueError(f"--decode gpu does not run {', '.join(missing)}: they run on the CPU, per image; "
                             f"use --decode cpu, or leave them out")
        if refusal:
            raise ValueError(f"--decode gpu: {refusal}")
        return "gpu"
    allowed = ["cpu", "per-image"] if decode == "cpu" or refusal else ["gpu", "cpu", "per-image"]
    return next(path for path in allowed if not not_run_by(path, augment))


def make_loader(
    split: Split,
    pre: Preprocess,
    batch_size: int,
    device: torch.device,
    skipped: SkipLog,
    workers: int | None = None,
    in_memory: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    on_gpu: bool = False,
) -> Loader:
    """An evaluation loader: no augmentation, the given order, every image once. ``on_gpu``: decoded,
    resized and centre-cropped on the GPU (close to, not bit-equal with, the model's ``Preprocess``)."""
    if in_memory:
        if not isinstance(split, ArraySplit):
            split = decode_split(split, pre, skipped)
        return TensorLoader(split, pre, batch_size, device, seed=seed, rank=rank, world_size=world_size)
    if isinstance(split, ArraySplit):
        raise ValueError("an in-memory dataset needs in_memory=True")
    workers = default_workers(device, world_size) if workers is None else workers
    if on_gpu:
        return StreamLoader(split, ReadEncoded(pre.in_chans), DeviceCrops(pre, device, train=False), batch_size,
                            skipped, device, workers, seed=seed, rank=rank, world_size=world_size, stack=False,
                            background=True)
    return StreamLoader(split, EvalGeometry(pre), NormalizeBatch(pre, device), batch_size, skipped, device, workers,
                        seed=seed, rank=rank, world_size=world_size)


def training_loader(split: EncodedSplit, path: str, pre: Preprocess, augment: AugmentOptions, opts: DataOptions,
                    device: torch.device, skipped: SkipLog, drop_last: bool, rank: int, world_size: int,
                    weights: torch.Tensor | None = None) -> Loader:
    workers = default_workers(device, world_size) if opts.workers is None else opts.workers
    common = dict(workers=workers, shuffle=True, drop_last=drop_last, seed=opts.seed, rank=rank, world_size=world_size,
                  weights=weights)
    if path == "gpu":
        finish = DeviceCrops(pre, device, train=True, jitter=augment.color_jitter, seed=opts.seed)
        return StreamLoader(split, ReadEncoded(pre.in_chans), finish, opts.batch_size, skipped, device, stack=False,
                            background=True, **common)
    if path == "cpu":
        crops = TrainCrops(pre.image_size, pre.in_chans, pre.interpolation, opts.seed)
        finish = NormalizeBatch(pre, device, augment.color_jitter, opts.seed)
        return StreamLoader(split, crops, finish, opts.batch_size, skipped, device, **common)
    read = per_image_transform(augment, pre, opts.seed)
    return StreamLoader(split, read, to_device(device), opts.batch_size, skipped, device, **common)


def build_video_data(dataset: Dataset, opts: DataOptions, device: torch.device, rank: int = 0,
                     world_size: int = 1) -> DataBundle:
    """Clips of videos: decoded and cropped in workers (``clips.ClipRead``), jittered and normalised per batch; with
    ``--decode gpu``, decoded and cropped on the GPU by the main process (``clips.DeviceClips``, NVDEC)."""
    refusal = ffmpeg_refusal()
    if refusal:
        raise ValueError(refusal)
    checked_decode(opts.decode)
    assert isinstance(dataset.train, VideoSplit) and isinstance(dataset.val, VideoSplit)
    on_device = opts.decode == "gpu"  # auto: the CPU workers, measured on every machine; NVDEC on request
    if on_device:
        refusal = nvdec_refusal(device, dataset.train.source(0) if len(dataset.train) else None)
        if refusal:
            raise ValueError(f"--decode gpu: {refusal}")
    clip = opts.clip or ClipOptions()
    image_size = opts.image_size or opts.default_image_size
    mean, std = known_stats(dataset, opts) or (IMAGENET_MEAN, IMAGENET_STD)
    pre = Preprocess(image_size, resize_for(image_size, opts.reference), tuple(mean), tuple(std), opts.in_chans)
    skipped = SkipLog("video")
    workers = default_workers(device, world_size) if opts.workers is None else opts.workers
    global_batch = opts.batch_size * world_size
    common = dict(workers=workers, seed=opts.seed, rank=rank, world_size=world_size)
    read = ClipRead(pre, clip.clip_frames, clip.frame_stride, opts.seed, train=True, flip=clip.flip)
    val_read = ClipRead(pre, clip.clip_frames, clip.frame_stride, opts.seed, train=False, clips=1)
    jitter = opts.augment.color_jitter
    if on_device:
        common.update(stack=False, background=True)
        train_read, finish = pass_source, DeviceClips(read, device, jitter)
        val_read, val_finish = pass_source, DeviceClips(val_read, device)
    else:
        train_read, finish = read, NormalizeBatch(pre, device, jitter, opts.seed)
        val_finish = NormalizeBatch(pre, device)
    train = StreamLoader(dataset.train, train_read, finish, opts.batch_size, skipped, device, shuffle=True,
                         drop_last=len(dataset.train) > global_batch, **common)
    val = StreamLoader(dataset.val, val_read, val_finish, opts.batch_size, skipped, device, **common)
    counts = label_counts(dataset.train.labels, len(dataset.classes))
    return DataBundle(dataset, pre, train, val, False, skipped, "video", counts.tolist())


def clip_loader(split: Split, pre: Preprocess, clip: Clip | None, batch_size: int, device: torch.device,
                skipped: SkipLog, workers: int | None = None, seed: int = 0) -> StreamLoader:
    """An evaluation loader of videos: ``clip.clips`` clips spread evenly over each, every video once, in order."""
    if not isinstance(split, VideoSplit):
        raise ValueError("a video model evaluates videos: --data is a folder of class folders of videos or a CSV")
    clip = clip or ClipOptions().clip()
    read = ClipRead(pre, clip.frames, clip.stride, seed, train=False, clips=clip.clips)
    workers = default_workers(device) if workers is None else workers
    return StreamLoader(split, read, NormalizeBatch(pre, device), batch_size, skipped, device, workers, seed=seed)


def build_data(
    dataset: Dataset, opts: DataOptions, device: torch.device, rank: int = 0, world_size: int = 1
) -> DataBundle:
    if dataset.task == "video":
        return build_video_data(dataset, opts, device, rank, world_size)
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
        if not isinstance(train_split, ArraySplit):
            train_split = decode_split(train_split, placeholder, skipped)
        if not isinstance(val_split, ArraySplit):
            val_split = decode_split(val_split, placeholder, skipped)
    sample = _stats_sample(train_split, placeholder) if known_stats(dataset, opts) is None else None
    mean, std = resolve_stats(dataset, opts, sample)
    interpolation = opts.reference.interpolation if opts.reference else "bilinear"
    pre = Preprocess(image_size, resize_for(image_size, opts.reference), mean, std, opts.in_chans, interpolation)

    global_batch = opts.batch_size * world_size
    if world_size > 1 and len(train_split) < global_batch:
        raise ValueError(f"the training split has {len(train_split)} images, fewer than one global batch "
                         f"({opts.batch_size} per process x {world_size} processes): lower --batch-size")
    drop_last = len(train_split) > global_batch if world_size == 1 else True
    if opts.sampler not in SAMPLERS:
        raise ValueError(f"config field 'sampler': {opts.sampler!r}, expected one of {', '.join(SAMPLERS)}")
    if opts.sampler != "none" and dataset.task == "multilabel":
        raise ValueError("--sampler balanced draws by class, and multi-label images have several: for rare "
                         "labels use --pos-weight balanced")
    counts = label_counts(train_split.labels, len(dataset.classes))
    weights = balanced_weights(train_split.labels, len(dataset.classes)) if opts.sampler == "balanced" else None
    common = dict(seed=opts.seed, rank=rank, world_size=world_size)
    if in_memory:
        assert isinstance(train_split, ArraySplit)
        path = "memory"
        train: Loader = TensorLoader(train_split, pre, opts.batch_size, device, augment=BatchAugment(augment, pre),
                                     shuffle=True, drop_last=drop_last, weights=weights, **common)
    else:
        assert isinstance(train_split, FileSplit | PackSplit)
        path = training_path(opts.decode, device, augment)
        train = training_loader(train_split, path, pre, augment, opts, device, skipped, drop_last, rank, world_size,
                                weights)
    val = make_loader(val_split, pre, opts.batch_size, device, skipped, opts.workers, in_memory,
                      on_gpu=path == "gpu", **common)
    return DataBundle(dataset, pre, train, val, in_memory, skipped, path, counts.tolist())


def label_counts(labels: list[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """Images per class: of integer labels, or of multi-hot rows (an image counts for each of its labels)."""
    labels = np.asarray(labels, dtype=np.int64)
    return labels.sum(0) if labels.ndim == 2 else np.bincount(labels, minlength=num_classes)


def describe(bundle: DataBundle) -> str:
    ds = bundle.dataset
    test = f", test {len(ds.test)}" if ds.test is not None else ""
    where = {"memory": "in memory, batch augmentation", "gpu": "decoded and augmented on the GPU",
             "cpu": "reduced-scale decoding in workers", "per-image": "per-image transforms",
             "video": "clips decoded by TorchCodec in workers"}[bundle.path]
    if bundle.dataset.packed_from:
        where += f", from a pack of {bundle.dataset.packed_from['source']}"
    val = "evaluating the test split" if ds.val is ds.test else f"val {len(ds.val)}"
    kind = "labels, multi-label" if ds.task == "multilabel" else "classes"
    return (f"data {ds.name}: {len(ds.classes)} {kind}, train {len(ds.train)}, {val}{test}; "
            f"{bundle.preprocess.image_size}px, {where}")




def model_split(data: str, classes: list[str], split: str, cache_dir: str | Path | None, seed: int = 0,
                split_file: Path | None = None, limit: int | None = None, task: str = "multiclass") -> Split:
    """``split`` of ``data`` for a model trained on ``classes`` (checked), at most ``limit`` images
    drawn at random with ``seed``."""
    dataset = load_dataset(data, cache_dir, seed, split_file, task=task)
    chosen = {"val": dataset.val, "test": dataset.test, "train": dataset.train}.get(split)
    if chosen is None:
        raise ValueError(f"{data}: has no {split!r} split")
    if dataset.classes != classes:
        raise ValueError(f"{data}: classes {dataset.classes} differ from the model's {classes}")
    if limit is not None and limit < len(chosen):
        picked = sorted(np.random.default_rng(seed).permutation(len(chosen))[:limit].tolist())
        chosen = subset(chosen, picked)
    return chosen
