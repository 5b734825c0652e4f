"""Named architectures and ``create_model``, the one way to build a network."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..modelfile import ModelSpec
from .reshape import apply_shapes
from .resnet import BasicBlock, Bottleneck, ResNet


@dataclass(frozen=True)
class Architecture:
    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, ...]
    family: str  # "imagenet": torchvision-compatible; "cifar": He et al. 2016 section 4.2
    widths: tuple[int, ...] = (64, 128, 256, 512)

    @property
    def default_image_size(self) -> int:
        return 224 if self.family == "imagenet" else 32


ARCHITECTURES: dict[str, Architecture] = {
    "resnet18": Architecture(BasicBlock, (2, 2, 2, 2), "imagenet"),
    "resnet34": Architecture(BasicBlock, (3, 4, 6, 3), "imagenet"),
    "resnet50": Architecture(Bottleneck, (3, 4, 6, 3), "imagenet"),
    "resnet101": Architecture(Bottleneck, (3, 4, 23, 3), "imagenet"),
    "resnet152": Architecture(Bottleneck, (3, 8, 36, 3), "imagenet"),
    **{
        f"resnet{6 * n + 2}": Architecture(BasicBlock, (n, n, n), "cifar", widths=(16, 32, 64))
        for n in (3, 5, 7, 9, 18)
    },
}


def list_models() -> list[str]:
    return list(ARCHITECTURES)


def architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(ARCHITECTURES)}") from None


def weighted_layers(spec: ModelSpec) -> int:
    """Convolutions and linear layers one after the other from input to logits (shortcuts aside)."""
    arch = architecture(spec.arch)
    per_block = 3 if arch.block is Bottleneck else 2
    return sum(arch.layers) * per_block + 2


def build_model(spec: ModelSpec) -> ResNet:
    """A randomly initialised network for ``spec`` (weights are loaded by ``create_model``)."""
    arch = architecture(spec.arch)
    if arch.family == "cifar" and spec.stem not in (None, "cifar"):
        raise ValueError(f"{spec.arch} is a CIFAR network; it has only the 'cifar' stem")
    model = ResNet(
        arch.block,
        arch.layers,
        num_classes=spec.num_classes,
        in_chans=spec.in_chans,
        widths=arch.widths,
        stem=spec.stem or arch.family,  # type: ignore[arg-type]
        shortcut="pad" if arch.family == "cifar" else "conv",
        dropout=spec.dropout,
        zero_init_residual=spec.zero_init_residual,
        se=spec.se,
        features_only=spec.features_only,
    )
    return apply_shapes(model, spec.shapes) if spec.shapes else model


def freeze(model: nn.Module, stages: list[str]) -> None:
    """Keep the named top-level parts fixed. ``"all-but-head"`` freezes everything except ``fc``.

    Frozen parts also keep their BatchNorm statistics: ``set_train_mode`` holds them in eval mode.
    """
    names = [n for n, _ in model.named_children()]
    if stages == ["all-but-head"]:
        stages = [n for n in names if n != "fc"]
    unknown = [s for s in stages if s not in names]
    if unknown:
        raise ValueError(f"cannot freeze {unknown}: the model's parts are {names} (or 'all-but-head')")
    for name in stages:
        for p in getattr(model, name).parameters():
            p.requires_grad_(False)
    model.frozen_parts = list(stages)  # type: ignore[assignment]


def set_train_mode(model: nn.Module, training: bool = True) -> None:
    """``model.train(training)`` but frozen parts stay in eval mode, so their BatchNorm statistics hold."""
    model.train(training)
    for name in getattr(model, "frozen_parts", []):
        getattr(model, name).eval()
