"""ResNet for ImageNet-size and CIFAR-size images.

The module names (``conv1``, ``bn1``, ``layer1``..``layer4``, ``downsample``, ``fc``) follow
torchvision's ``models/resnet.py`` exactly, so torchvision checkpoints load without renaming.
The CIFAR networks of He et al. (2016, section 4.2) are the same class with a 3x3 stem, three
stages of 16/32/64 channels and parameter-free shortcuts (the paper's option A).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Stem = Literal["imagenet", "cifar"]
Shortcut = Literal["conv", "pad"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def squeeze_excitation(channels: int, reduction: int = 16) -> nn.Module:
    # imported here, by the SE blocks that need it: torchvision.ops brings in torch._dynamo, a second of
    # start-up that every plain ResNet (a first `reslab predict`, a server starting) would otherwise pay
    from torchvision.ops.misc import SqueezeExcitation

    return SqueezeExcitation(channels, max(8, channels // reduction))


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: subsample by striding and zero-pad the new channels (no parameters)."""

    def __init__(self, out_planes: int, stride: int) -> None:
        super().__init__()
        self.out_planes = out_planes
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[..., :: self.stride, :: self.stride]  # the two spatial axes, last in images and clips alike
        extra = self.out_planes - x.shape[1]
        return F.pad(x, (0, 0) * (x.dim() - 2) + (extra // 2, extra - extra // 2))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, se: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = squeeze_excitation(planes) if se else None
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 convolution, as in torchvision."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, se: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.se = squeeze_excitation(planes * self.expansion) if se else None
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """A residual network.

    ``features_only=True`` drops the classifier and returns an ``OrderedDict`` of every stage's
    feature map (``layer1``..), so the network serves as a backbone; ``out_channels`` lists
    their widths.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: Stem = "imagenet",
        shortcut: Shortcut = "conv",
        dropout: float = 0.0,
        zero_init_residual: bool = False,
        se: bool = False,
        features_only: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"layers {list(layers)} and widths {list(widths)} must have the same length")
        self.block = block
        self.shortcut = shortcut
        self.se = se
        self.features_only = features_only
        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        elif stem == "cifar":
            self.conv1 = conv3x3(in_chans, self.inplanes)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.stage_names = [f"layer{i + 1}" for i in range(len(layers))]
        for i, (name, width, depth) in enumerate(zip(self.stage_names, widths, layers)):
            self.add_module(name, self._make_layer(width, depth, stride=1 if i == 0 else 2))
        self.out_channels = [w * block.expansion for w in widths]
        self.num_features = self.out_channels[-1]
        if not features_only:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out_planes = planes * self.block.expansion
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != out_planes:
            if self.shortcut == "pad":
                downsample = ZeroPadShortcut(out_planes, stride)
            else:
                downsample = nn.Sequential(conv1x1(self.inplanes, out_planes, stride), nn.BatchNorm2d(out_planes))
        layers = [self.block(self.inplanes, planes, stride, downsample, se=self.se)]
        self.inplanes = out_planes
        layers += [self.block(self.inplanes, planes, se=self.se) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            # Each residual branch starts as zero, so every block starts as the identity.
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.constant_(m.last_bn().weight, 0)

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    def forward_features(self, x: Tensor) -> OrderedDict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features: OrderedDict[str, Tensor] = OrderedDict()
        for name, stage in zip(self.stage_names, self.stages()):
            x = stage(x)
            features[name] = x
        return features

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    def forward(self, x: Tensor) -> Tensor | OrderedDict[str, Tensor]:
        features = self.forward_features(x)
        if self.features_only:
            return features
        return self.forward_head(next(reversed(features.values())))
