"""Models: ``create_model`` builds any network by name, with weights and frozen parts."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data.options import ClipOptions
from ..modelfile import ModelInfo, ModelSpec, read_model_file
from .complexity import count_macs, count_params
from .registry import (
    ARCHITECTURES,
    architecture,
    build_model,
    freeze,
    is_video,
    list_models,
    set_train_mode,
    weight_rank,
    weighted_layers,
)
from .resnet import BasicBlock, Bottleneck, ResNet
from .weights import WeightsError, download_pretrained, load_into, read_weights

__all__ = [
    "ARCHITECTURES", "BasicBlock", "Bottleneck", "ModelSpec", "ResNet", "WeightsError", "architecture",
    "build_model", "count_macs", "count_params", "create_model", "freeze", "is_video", "list_models", "load_model_file",
    "set_train_mode", "weight_rank", "weighted_layers",
]


def create_model(
    name: str,
    num_classes: int = 1000,
    pretrained: bool = False,
    weights: str | Path | None = None,
    freeze_parts: list[str] | None = None,
    backbone: str | Path | None = None,
    **options,
) -> ResNet:
    """Build ``name`` (see ``list_models()``) with options (``in_chans``, ``stem``, ``dropout``,
    ``zero_init_residual``, ``se``, ``features_only``).

    ``pretrained=True`` loads torchvision's ImageNet weights; ``weights=PATH`` a local torchvision
    ``.pth``, a reslab model file or a Hugging Face ResNet folder. A head of another size is replaced.
    The model's ``class_names`` holds the weights' classes when they match ``num_classes``. ``backbone=PATH``:
    every weight of a reslab model file but its head, under a new head (``reslab train --init``).
    """
    if sum((pretrained, weights is not None, backbone is not None)) > 1:
        raise ValueError("pass one of pretrained=True, weights=PATH and backbone=PATH")
    model = build_model(ModelSpec(arch=name, num_classes=num_classes, **options))
    classes: list[str] | None = None
    if pretrained:
        state, classes = download_pretrained(name)
        load_into(model, state)
    elif weights is not None:
        state, classes = read_weights(weights)
        load_into(model, state)
    elif backbone is not None:
        state, _ = read_weights(backbone)
        load_into(model, {k: v for k, v in state.items() if not k.startswith("fc.")})
    model.class_names = classes if classes is not None and len(classes) == num_classes else None
    if freeze_parts:
        freeze(model, freeze_parts)
    return model


def describe_models(image_size: int | None = None) -> list[dict]:
    """Each architecture with its parameters and MACs at its default (or the given) size, 1000 classes
    for ImageNet networks and 10 for CIFAR ones; a video network's per clip of the default length."""
    rows = []
    for name, arch in ARCHITECTURES.items():
        size = image_size or arch.default_image_size
        classes = 1000 if arch.family == "imagenet" else 10
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            model: nn.Module = build_model(ModelSpec(arch=name, num_classes=classes))
        frames = ClipOptions().clip_frames if arch.video else None
        rows.append({"model": name, "family": "video" if arch.video else arch.family, "classes": classes,
                     "image_size": size, "frames": frames, "params": count_params(model),
                     "macs": count_macs(model, size, frames=frames)})
    return rows


def load_model_file(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Rebuild the network described by a model file, with its weights, in eval mode."""
    state, info = read_model_file(path)
    model = build_model(info.spec)
    model.load_state_dict(state)
    return model.to(device).eval(), info


def format_models(rows: list[dict]) -> str:
    lines = [f"{'model':<13}{'family':<10}{'classes':>8}{'size':>6}{'frames':>7}{'params':>14}{'GMACs':>9}"]
    lines += [f"{r['model']:<13}{r['family']:<10}{r['classes']:>8}{r['image_size']:>6}{r['frames'] or '-':>7}"
              f"{r['params']:>14,}{r['macs'] / 1e9:>9.3f}" for r in rows]
    return "\n".join(lines)
