"""Multi-process training with ``torchrun``: process group set-up and tear-down.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them everything here is a
no-op and training runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..hardware import DeviceError, resolve_device


@dataclass
class Runtime:
    """Where this process runs: its device and its place among the training processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device_name: str) -> Runtime:
    """This process's runtime, joining the process group when run by torchrun: NCCL with one GPU
    per process (``cuda:LOCAL_RANK``), Gloo on CPUs."""
    if not launched_by_torchrun():
        return Runtime(resolve_device(device_name))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = resolve_device(device_name).type == "cuda"
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise DeviceError(f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} GPU(s): "
                             f"--nproc-per-node must be at most the number of GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    return Runtime(device, dist.get_rank(), dist.get_world_size())


def close_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
