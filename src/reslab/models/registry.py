"""Named architectures and ``create_model``, the one way to build a network."""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from ..modelfile import ModelSpec
from .inflate import FrameAveraged, inflate
from .reshape import apply_shapes
from .resnet import BasicBlock, Bottleneck, ResNet


@dataclass(frozen=True)
class Architecture:
    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, ...]
    family: str  # "imagenet": torchvision-compatible; "cifar": He et al. 2016 section 4.2
    widths: tuple[int, ...] = (64, 128, 256, 512)
    video: str | None = None  # "inflated": a 2D network's 3D twin; "frames": run per frame, logits averaged
    # (models.inflate); "torchvision": torchvision's VideoResNet

    @property
    def default_image_size(self) -> int:
        if self.video == "torchvision":
            return 112  # Kinetics-400's frames, as torchvision's video weights were trained
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
VIDEO_SUFFIXES = {"-3d": "inflated", "-frames": "frames"}  # a 2D network's video variants (models.inflate)
ARCHITECTURES.update({f"{name}{suffix}": replace(arch, video=kind)
                      for name, arch in list(ARCHITECTURES.items()) for suffix, kind in VIDEO_SUFFIXES.items()})
# torchvision's video ResNets (Tran et al. 2018), with Kinetics-400 weights: 3D convolutions throughout (r3d),
# 3D in the first stage and 2D after (mc3), and each 3D convolution split into 2D + 1D (r(2+1)d)
ARCHITECTURES.update({name: Architecture(BasicBlock, (2, 2, 2, 2), "imagenet", video="torchvision")
                      for name in ("r3d_18", "mc3_18", "r2plus1d_18")})


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


def is_video(name: str) -> bool:
    return architecture(name).video is not None


def weights_arch(name: str) -> str:
    """The network whose published weights ``name`` starts from: a video twin's 2D network (``resnet18`` for
    ``resnet18-3d``: its weights are inflated on loading), else ``name`` itself."""
    if architecture(name).video in ("inflated", "frames"):
        return next(name.removesuffix(suffix) for suffix in VIDEO_SUFFIXES if name.endswith(suffix))
    return name


def weight_rank(model: nn.Module) -> int:
    """5 for a network of 3D convolutions, 4 for 2D ones (a per-frame video network's too): its weights' layout."""
    return max(p.dim() for p in model.parameters())


def build_model(spec: ModelSpec) -> nn.Module:
    """A randomly initialised network for ``spec`` (weights are loaded by ``create_model``)."""
    arch = architecture(spec.arch)
    if arch.video == "torchvision":
        return _torchvision_video(spec)
    if arch.video == "inflated":
        return inflate(build_model(replace(spec, arch=spec.arch.removesuffix("-3d"))))
    if arch.family == "cifar" and spec.stem not in (None, "cifar"):
        raise ValueError(f"{spec.arch} is a CIFAR network; it has only the 'cifar' stem")
    network = FrameAveraged if arch.video == "frames" else ResNet
    model = network(
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


def _torchvision_video(spec: ModelSpec) -> nn.Module:
    from torchvision.models import video  # torchvision: only for these networks

    unsupported = [name for name, on in (("in_chans", spec.in_chans != 3), ("stem", spec.stem is not None),
                                          ("se", spec.se), ("features_only", spec.features_only),
                                          ("dropout", spec.dropout > 0), ("shapes", bool(spec.shapes))) if on]
    if unsupported:
        raise ValueError(f"{spec.arch}: torchvision's video network takes none of {', '.join(unsupported)}")
    return getattr(video, spec.arch)(num_classes=spec.num_classes)


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
