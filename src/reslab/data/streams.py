"""``StreamLoader``: images from disk or a pack, read by persistent workers and finished a batch at a time.

Workers run ``read(source, index, epoch)`` on each sample (decode and crop on the CPU path, read the
bytes on the GPU path); the main process runs ``finish`` on each batch (normalise, or decode and crop
on the GPU). Random draws depend on (seed, epoch, index) only, which is what lets the workers persist
across epochs without changing the training: the sampler hands every worker the epoch with the index.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from .images import UnreadableImageError
from .loaders import SkipLog, stack_labels
from .sampling import draw_keys, epoch_sequence, rank_positions, shard_size
from .splits import EncodedSplit


@dataclass
class RawBatch:
    """What the workers hand over: payloads (a stacked tensor, or a list), labels, and what failed."""

    payloads: Tensor | list[Any]
    labels: Tensor
    indices: list[int]  # draw keys (``sampling.draw_keys``): each sample's index, unless it is a repeat
    failed: list[tuple[int, str]]

    def pin_memory(self) -> RawBatch:
        """Called by the DataLoader's pinning thread (on a GPU): stacked payloads and labels into pinned memory."""
        payloads = self.payloads.pin_memory() if isinstance(self.payloads, Tensor) else self.payloads
        return RawBatch(payloads, self.labels.pin_memory(), self.indices, self.failed)


class _EpochKeys(Sampler[tuple[int, int]]):
    def __init__(self, loader: StreamLoader) -> None:
        self.loader = weakref.proxy(loader)  # no cycle: a loader let go of stops its workers at once

    def __iter__(self) -> Iterator[tuple[int, int]]:
        ld = self.loader
        n = len(ld.split)
        keys = draw_keys(epoch_sequence(n, ld.seed, ld.epoch, ld.shuffle, ld.weights), n)
        return ((k, ld.epoch) for k in keys[rank_positions(n, ld.rank, ld.world_size, ld.batch_size,
                                                             ld.drop_last)].tolist())

    def __len__(self) -> int:
        ld = self.loader
        return shard_size(len(ld.split), ld.rank, ld.world_size, ld.batch_size, ld.drop_last)


class _Samples(torch.utils.data.Dataset):
    def __init__(self, split: EncodedSplit, read: Callable[[Any, int, int], Any]) -> None:
        self.split, self.read = split, read

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, int, int]:
        """``key``: (draw key, epoch); the draw key is the sample's index, plus a multiple of the split's
        length for a repeat within the epoch (``sampling.draw_keys``)."""
        k, epoch = key
        i = k % len(self.split)
        try:
            return self.read(self.split.source(i), k, epoch), self.split.labels[i], k
        except UnreadableImageError as e:
            return e, self.split.labels[i], k


def _collate(items: list[tuple[Any, int, int]], stack: bool) -> RawBatch:
    good = [(x, y, i) for x, y, i in items if not isinstance(x, UnreadableImageError)]
    failed = [(i, str(x)) for x, _, i in items if isinstance(x, UnreadableImageError)]
    payloads = [x for x, _, _ in good]
    if stack and payloads:
        payloads = torch.from_numpy(np.stack(payloads))
    return RawBatch(payloads, stack_labels([y for _, y, _ in good]), [i for _, _, i in good],
                    failed)


class StreamLoader:
    """One interface with ``TensorLoader``: ``set_epoch``, ``len``, iterate ``(x, y)``.

    ``stack``: the workers' payloads are equal-size arrays, stacked in the worker. ``background``: run
    ``finish`` one batch ahead in a thread (on its own CUDA stream on a GPU), so that decoding the next
    batch overlaps the current training step."""

    def __init__(self, split: EncodedSplit, read: Callable[[Any, int, int], Any],
                 finish: Callable[[RawBatch, int], Tensor], batch_size: int, skipped: SkipLog, device: torch.device,
                 workers: int = 2, shuffle: bool = False, drop_last: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1, stack: bool = True, background: bool = False,
                 weights: Tensor | None = None) -> None:
        """``weights``: per-sample weights of a balanced sampler (draws with replacement)."""
        self.split, self.finish, self.skipped, self.device = split, finish, skipped, device
        self.weights = weights
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.background = background
        self.epoch = 0
        self.loader = DataLoader(
            _Samples(split, read), batch_size=batch_size, sampler=_EpochKeys(self), num_workers=workers,
            collate_fn=functools.partial(_collate, stack=stack), drop_last=drop_last,
            pin_memory=device.type == "cuda", persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.loader)

    def _finished(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        for batch in self.loader:
            x = self.finish(batch, epoch) if len(batch.labels) else None  # may drop what it cannot decode
            for k, reason in batch.failed:
                self.skipped.add(str(self.split.paths[k % len(self.split)]), reason)
            if x is not None and len(batch.labels):
                yield x, batch.labels.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        batches = self._finished()
        return ahead(batches, self.device) if self.background else batches


def ahead(batches: Iterator[tuple[Tensor, Tensor]], device: torch.device, depth: int = 2
          ) -> Iterator[tuple[Tensor, Tensor]]:
    """Produce ``batches`` in a thread, ``depth`` batches ahead; on a GPU on a side stream, whose work
    the consumer's stream waits for before it uses a batch."""
    slots: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    gpu = (device.index if device.index is not None else torch.cuda.current_device()) if stream is not None else None

    def put(item: Any) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                slots.put(item, timeout=0.1)
                return True
        return False

    def produce() -> None:
        try:
            if gpu is not None:
                torch.cuda.set_device(gpu)  # a new thread starts on the first GPU, not on this process's
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                for x, y in batches:
                    event = None
                    if stream is not None:
                        event = torch.cuda.Event()
                        event.record(stream)
                    if not put((x, y, event)):
                        return
        except BaseException as e:  # handed to the consumer, raised there
            put(e)
            return
        put(None)

    thread = threading.Thread(target=produce, daemon=True, name="reslab-batches")
    thread.start()
    try:
        while (item := slots.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            x, y, event = item
            if event is not None:
                current = torch.cuda.current_stream(device)
                current.wait_event(event)
                x.record_stream(current)
                y.record_stream(current)
            yield x, y
    finally:
        stop.set()
        thread.join(timeout=5)
