"""Which samples each process trains on, epoch by epoch: a seeded shuffle, or with a balanced sampler
draws with replacement weighted by 1 / class frequency. Both depend on (seed, epoch) only, so a resumed
run and a run on any number of processes see the same global batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

SAMPLERS = ("none", "balanced")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def balanced_weights(labels: Sequence[int] | Tensor, num_classes: int) -> Tensor:
    """Per-sample weights that give each class present the same expected share of an epoch."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    counts = torch.bincount(labels, minlength=num_classes).double()
    return 1.0 / counts[labels]


def epoch_sequence(n: int, seed: int, epoch: int, shuffle: bool, weights: Tensor | None = None) -> Tensor:
    """The epoch's global sequence of ``n`` sample indices: a seeded permutation (or ``0..n-1``), or,
    with ``weights``, ``n`` seeded draws with replacement in proportion to them."""
    generator = epoch_generator(seed, epoch)
    if weights is not None:
        if len(weights) != n:
            raise ValueError(f"sampler weights: {len(weights)} weights for {n} samples")
        return torch.multinomial(weights.double(), n, replacement=True, generator=generator)
    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


def rank_positions(n: int, rank: int = 0, world_size: int = 1, batch_size: int = 1, drop_last: bool = False
                   ) -> Tensor:
    """Positions in an epoch's global sequence that ``rank`` takes. The sequence is cut into global
    batches of ``batch_size * world_size``; rank r takes the r-th slice of each. The global batches, and
    so the training, do not depend on the number of processes: N processes step like one process that
    accumulates N batches. The tail that fills no global batch is dropped (``drop_last``) or shared out
    in near-equal parts, so that each position is taken exactly once."""
    global_batch = batch_size * world_size
    full = n // global_batch
    head = torch.arange(full * global_batch).view(full, world_size, batch_size)[:, rank].reshape(-1)
    if drop_last:
        return head
    start, m = full * global_batch, n - full * global_batch
    tail = torch.arange(start + rank * m // world_size, start + (rank + 1) * m // world_size)
    return torch.cat([head, tail])


def shard_size(n: int, rank: int, world_size: int, batch_size: int = 1, drop_last: bool = False) -> int:
    """How many of ``n`` samples ``rank_positions`` deals to ``rank``."""
    global_batch = batch_size * world_size
    head = n // global_batch * batch_size
    m = n % global_batch
    return head if drop_last else head + (rank + 1) * m // world_size - rank * m // world_size


def draw_keys(sequence: Tensor, n: int) -> Tensor:
    """A key per position of an epoch's sequence for the per-sample random draws: the sample's index the
    first time it comes up in the epoch, ``index + k * n`` the k-th time it comes up again (a balanced
    sampler draws with replacement), so that each copy gets its own crop. ``key % n`` is the index."""
    order = torch.sort(sequence, stable=True).indices
    sorted_seq = sequence[order]
    starts = torch.ones_like(sorted_seq, dtype=torch.bool)
    starts[1:] = sorted_seq[1:] != sorted_seq[:-1]
    group_start = torch.cummax(torch.where(starts, torch.arange(len(sequence)), 0), 0).values
    repeat = torch.empty_like(sequence)
    repeat[order] = torch.arange(len(sequence)) - group_start
    return sequence + repeat * n
