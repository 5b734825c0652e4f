"""Sums, averages and gathers over training processes; each is a no-op in a single process.

At the bottom of the layering: the trainer and the evaluation both use them.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Elementwise sum of ``values`` over all processes (in place; unchanged in one process)."""
    if is_distributed():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def average_batchnorm_statistics(model: nn.Module) -> None:
    """Average BatchNorm running statistics over ranks, so that every rank evaluates, and rank 0
    saves, one model whose statistics have seen every rank's batches."""
    if not is_distributed():
        return
    world = dist.get_world_size()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            for buffer in (module.running_mean, module.running_var):
                dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                buffer.div_(world)


def gather_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Every process's rows of ``values`` (CPU), concatenated in rank order (unchanged in one process)."""
    if not is_distributed():
        return values
    pieces: list[torch.Tensor | None] = [None] * dist.get_world_size()
    dist.all_gather_object(pieces, values.cpu())
    return torch.cat([p for p in pieces if p is not None])
