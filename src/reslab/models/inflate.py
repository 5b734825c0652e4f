"""Video networks made of 2D ResNets: inflated over time (I3D, Carreira and Zisserman 2017), or run frame by
frame with their logits averaged over the clip (the baseline that cannot see motion).

Each 2D kernel becomes a 3D one repeated over time and divided by its length, and each layer keeps its name,
so a 2D model's weights load into the 3D network unchanged (``inflate_weight``) and a clip of identical frames
gives the 2D network's features and logits. The stem and pooling stay spatial ((1, 7, 7), (1, 3, 3)); the first
convolution of every residual block sees ``time_kernel`` frames. Time is never strided: a clip's T frames run
through the whole network, and the final average pools over them.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .resnet import BasicBlock, Bottleneck, ResNet

TIME_KERNEL = 3


class InflatedConv3d(nn.Conv3d):
    """A 2D convolution's 3D twin. Time is padded by repeating the first and last frames (not by zeros), so that
    a clip of identical frames gets the 2D output at every time step, edges included."""

    def __init__(self, conv: nn.Conv2d, time_kernel: int) -> None:
        super().__init__(conv.in_channels, conv.out_channels, (time_kernel, *conv.kernel_size),
                         stride=(1, *conv.stride), padding=(0, *conv.padding), dilation=(1, *conv.dilation),
                         groups=conv.groups, bias=conv.bias is not None, device=conv.weight.device,
                         dtype=conv.weight.dtype)
        self.time_pad = time_kernel // 2
        with torch.no_grad():
            self.weight.copy_(inflate_weight(conv.weight, time_kernel))
            if conv.bias is not None:
                self.bias.copy_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, self.time_pad), mode="replicate")
        return super().forward(x)


def inflate_weight(weight: Tensor, time_kernel: int) -> Tensor:
    """(out, in, kh, kw) -> (out, in, time_kernel, kh, kw): repeated over time, divided by its length."""
    return weight.unsqueeze(2).repeat(1, 1, time_kernel, 1, 1) / time_kernel


def _batch_norm_3d(bn: nn.BatchNorm2d) -> nn.BatchNorm3d:
    out = nn.BatchNorm3d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                         device=bn.weight.device if bn.affine else None)
    out.load_state_dict(bn.state_dict())
    return out


def _inflate_children(module: nn.Module, time_kernel: int) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            first_of_block = isinstance(module, BasicBlock | Bottleneck) and name == "conv1"
            setattr(module, name, InflatedConv3d(child, time_kernel if first_of_block else 1))
        elif isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _batch_norm_3d(child))
        elif isinstance(child, nn.MaxPool2d):
            k, s, p = (child.kernel_size, child.stride, child.padding)
            setattr(module, name, nn.MaxPool3d((1, k, k), (1, s, s), (0, p, p)))
        elif isinstance(child, nn.AdaptiveAvgPool2d):
            setattr(module, name, nn.AdaptiveAvgPool3d(1))
        else:
            _inflate_children(child, time_kernel)


def inflate(model: ResNet, time_kernel: int = TIME_KERNEL) -> ResNet:
    """A 3D copy of a 2D ResNet, input (N, C, T, H, W), with the same layer names and inflated weights."""
    if model.se:
        raise ValueError("squeeze-and-excitation blocks are not inflated: build the video network without --se")
    inflated = copy.deepcopy(model)
    _inflate_children(inflated, time_kernel)
    return inflated


class FrameAveraged(ResNet):
    """A 2D ResNet applied to each frame of a clip (N, C, T, H, W), its logits averaged over time: the layout,
    and so the weights, of the 2D network, which sees appearance but never the order of the frames."""

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, h, w = x.shape
        logits = super().forward(x.transpose(1, 2).reshape(n * t, c, h, w))
        return logits.view(n, t, -1).mean(1)
