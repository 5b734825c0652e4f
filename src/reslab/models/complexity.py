"""Parameter and multiply-accumulate counts."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int, in_chans: int = 3, frames: int | None = None) -> int:
    """Multiply-accumulates of one forward pass on one image, or on one clip of ``frames`` frames for a video
    network (convolutions and linear layers).

    PyTorch's flop counter counts a multiply and an add as two FLOPs; MACs are half of that,
    the unit torchvision's model tables report as "GFLOPS".
    """
    # imported here: torch's flop counter pulls in triton and torch.export, 0.3 s of every command's start-up
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        time = (frames,) if frames is not None else ()
        model(torch.zeros(1, in_chans, *time, image_size, image_size, device=device))
    model.train(was_training)
    return counter.get_total_flops() // 2
