"""Batches from memory, and what every loader shares.

Two loaders with one interface (``set_epoch``, ``len``, iterate ``(images, labels)``):
- ``TensorLoader`` (here): decoded uint8 images in memory (on the training device), augmented a whole
  batch at a time: the path for CIFAR-size data, with no worker processes.
- ``StreamLoader`` (``streams.py``): images from files or a pack, a read step per image in workers and a
  batch step on the CPU or the GPU (``decoding.py``'s steps: the CPU, GPU and per-image paths).
Both shuffle with a generator seeded by (seed, epoch) and can shard by rank for DDP.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from .images import UnreadableImageError
from .preprocess import Preprocess
from .sampling import epoch_generator, epoch_sequence, rank_positions, shard_size
from .splits import ArraySplit, EncodedSplit
from .transforms import BatchAugment


class SkipLog:
    """Files that could not be decoded: each warned about once, counted for the run summary."""

    def __init__(self, kind: str = "image") -> None:
        self.kind = kind  # what the files are: image, video
        self.files: dict[str, str] = {}

    def add(self, path: str, reason: str) -> None:
        if path not in self.files:
            self.files[path] = reason
            warnings.warn(f"skipping unreadable {self.kind} {reason}", stacklevel=2)

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

    def in_order(self) -> TensorLoader:
        """The same images, each once, in order and unaugmented, all of them in this process."""
        plain = copy.copy(self)
        plain.augment, plain.shuffle, plain.drop_last, plain.weights = None, False, False, None
        plain.rank, plain.world_size = 0, 1
        return plain

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


def stack_labels(labels: list) -> Tensor:
    """A batch's labels: integers (N,), or multi-hot rows (N, classes) of multi-label data."""
    return torch.from_numpy(np.asarray(labels, dtype=np.int64))
