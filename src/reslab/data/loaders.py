"""Batches for training and evaluation.

Two paths with one interface (``set_epoch``, ``len``, iterate ``(images, labels)``):
- ``TensorLoader``: decoded uint8 images in memory (on the training device), augmented a whole
  batch at a time: the path for CIFAR-size data, with no worker processes.
- ``FileLoader``: images read from disk by a ``DataLoader``'s workers, transformed per image.
Both shuffle with a generator seeded by (seed, epoch) and can shard by rank for DDP.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from .images import UnreadableImageError
from .preprocess import Preprocess
from .sampling import epoch_generator, epoch_order, epoch_sequence, rank_positions, shard_size
from .splits import ArraySplit, EncodedSplit
from .transforms import BatchAugment


class SkipLog:
    """Files that could not be decoded: each warned about once, counted for the run summary."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}

    def add(self, path: str, reason: str) -> None:
        if path not in self.files:
            self.files[path] = reason
            warnings.warn(f"skipping unreadable image {reason}", stacklevel=2)

    def __len__(self) -> int:
        return len(self.files)


def decode_split(split: EncodedSplit, pre: Preprocess, skipped: SkipLog, threads: int = 4) -> ArraySplit:
    """Decode every image once to uint8 (C, H, W) at the preprocessing's size; skip unreadable ones."""
    def decode(i: int) -> np.ndarray | str:
        source = split.source(i)
        try:
            return pre.geometry(pre.open(source, name=str(split.paths[i]) if isinstance(source, bytes) else None))
        except UnreadableImageError as e:
            return str(e)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(decode, range(len(split))))
    images, labels = [], []
    for path, label, result in zip(split.paths, split.labels, results):
        if isinstance(result, str):
            skipped.add(str(path), result)
        else:
            images.append(result)
            labels.append(label)
    if not images:
        raise ValueError("no readable images in this split")
    return ArraySplit(np.stack(images), np.asarray(labels, dtype=np.int64))


class TensorLoader:
    def __init__(
        self,
        split: ArraySplit,
        pre: Preprocess,
        batch_size: int,
        device: torch.device,
        augment: BatchAugment | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: Tensor | None = None,
    ) -> None:
        """``weights``: per-sample weights of a balanced sampler (draws with replacement)."""
        self.images = torch.from_numpy(split.images).to(device)
        self.labels = torch.from_numpy(np.asarray(split.labels, dtype=np.int64)).to(device)
        self.pre, self.augment = pre, augment
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.weights = weights
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = shard_size(len(self.labels), self.rank, self.world_size, self.batch_size, self.drop_last)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        sequence = epoch_sequence(n, self.seed, self.epoch, self.shuffle, self.weights)
        positions = rank_positions(n, self.rank, self.world_size, self.batch_size, self.drop_last)
        # one draw per position of the epoch's global sequence: a sample's augmentation does not depend on
        # the batching or the number of processes, and a sample drawn twice (balanced sampler) gets two
        generator = epoch_generator(self.seed + 1, self.epoch)
        draws = self.augment.draw(n, generator) if self.augment else None
        for b in range(len(self)):
            slots = positions[b * self.batch_size : (b + 1) * self.batch_size]
            idx = sequence[slots]
            batch = self.images[idx.to(self.images.device)]
            x = self.augment(batch, draws[slots]) if draws is not None else self.pre.normalize(batch)
            yield x, self.labels[idx.to(self.labels.device)]


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, split: EncodedSplit, transform: Callable, decode: Callable[[Path | bytes], Image.Image]
                 ) -> None:
        self.split, self.transform, self.decode = split, transform, decode

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[Tensor | np.ndarray | str, int, int]:
        """The transformed image, or the reason it cannot be decoded."""
        try:
            return self.transform(self.decode(self.split.source(i))), self.split.labels[i], i
        except UnreadableImageError as e:
            return str(e), self.split.labels[i], i


def _collate_skipping(
    items: list[tuple[Tensor | np.ndarray | str, int, int]],
) -> tuple[Tensor, Tensor, list[tuple[int, str]]]:
    """Training transforms give tensors, evaluation's ``Preprocess`` NumPy arrays; failures their reason."""
    good = [(x, y) for x, y, _ in items if not isinstance(x, str)]
    failed = [(i, x) for x, _, i in items if isinstance(x, str)]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), failed
    return torch.stack([torch.as_tensor(x) for x, _ in good]), stack_labels([y for _, y in good]), failed


def stack_labels(labels: list) -> Tensor:
    """A batch's labels: integers (N,), or multi-hot rows (N, classes) of multi-label data."""
    return torch.from_numpy(np.asarray(labels, dtype=np.int64))


class _EpochSampler(Sampler[int]):
    def __init__(self, loader: FileLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[int]:
        ld = self.loader
        return iter(epoch_order(len(ld.split), ld.seed, ld.epoch, ld.shuffle, ld.rank, ld.world_size,
                                ld.batch_size, ld.drop_last, ld.weights).tolist())

    def __len__(self) -> int:
        ld = self.loader
        return shard_size(len(ld.split), ld.rank, ld.world_size, ld.batch_size, ld.drop_last)


class FileLoader:
    def __init__(
        self,
        split: EncodedSplit,
        transform: Callable,
        decode: Callable[[Path | bytes], Image.Image],
        batch_size: int,
        skipped: SkipLog,
        workers: int = 2,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
        weights: Tensor | None = None,
    ) -> None:
        self.split, self.skipped, self.weights = split, skipped, weights
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.batch_size, self.drop_last = batch_size, drop_last
        self.epoch = 0
        self.loader = DataLoader(
            _ImageFiles(split, transform, decode),
            batch_size=batch_size,
            sampler=_EpochSampler(self),
            num_workers=workers,
            collate_fn=_collate_skipping,
            drop_last=drop_last,
            pin_memory=pin_memory,
            persistent_workers=False,
            worker_init_fn=_seed_worker,
            generator=torch.Generator().manual_seed(seed),
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.loader.generator.manual_seed(self.seed * 100_003 + epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y, failed in self.loader:
            for i, reason in failed:
                self.skipped.add(str(self.split.paths[i]), reason)
            if len(y):
                yield x, y


def _seed_worker(worker_id: int) -> None:
    """Per-worker seeds for the transforms' random draws, derived from the loader's generator."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
