"""Loading weights: torchvision's ImageNet weights, local torchvision ``.pth`` files, reslab model
files and local Hugging Face ``microsoft/resnet-*`` folders, all into torchvision's layout."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from ..data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from ..modelfile import ModelFileError, read_model_file, read_model_info
from .inflate import inflate_weight
from .registry import weights_arch

StateDict = dict[str, Tensor]


class WeightsError(ValueError):
    """Weights that cannot be read or do not fit the model; the message says which and why."""


def torchvision_weights(arch: str, tag: str | None = None):
    """torchvision's weights entry for an architecture: ``tag`` (``IMAGENET1K_V2``) or the weights API's
    default. It carries the URL, class names and preprocessing."""
    from torchvision.models import get_model_weights

    try:
        entries = get_model_weights(weights_arch(arch))
    except (ValueError, KeyError):
        raise WeightsError(f"torchvision has no pretrained weights for {arch!r} (CIFAR networks have none)") from None
    if tag is None:
        return entries.DEFAULT
    try:
        return entries[tag]
    except KeyError:
        raise WeightsError(f"{arch}:{tag}: no such weights; torchvision has {', '.join(e.name for e in entries)}") \
            from None


def torchvision_preprocess(entry, decode: str = "full") -> Preprocess:
    """A weights entry's own ``transforms()`` (resize, crop, interpolation, mean/std); decoded at full size by
    default, as torchvision's reference evaluation does."""
    t = entry.transforms()
    return Preprocess(t.crop_size[0], t.resize_size[0], tuple(t.mean), tuple(t.std), 3, t.interpolation.value,
                      decode=decode)


def hub_checkpoint(url: str) -> Path:
    """Where torch hub keeps the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def download_checkpoint(url: str) -> Path:
    """``url`` downloaded once into torch hub's cache, its hash checked against the name's prefix."""
    destination = hub_checkpoint(url)
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    prefix = torch.hub.HASH_REGEX.search(destination.name)
    try:
        torch.hub.download_url_to_file(url, str(destination), prefix.group(1) if prefix else None, progress=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a hash mismatch a RuntimeError
        raise WeightsError(
            f"could not download {url} ({e}) into {destination}. Offline? Download it on a machine that is "
            f"online and put it at {destination}, or pass the file: --weights {destination.name}") from e
    return destination


def weights_preprocess(arch: str, pretrained: bool, weights: str | Path | None) -> Preprocess | None:
    """The preprocessing the starting weights were trained with (None when training from scratch):
    torchvision's weights carry their own transforms, a reslab model file its metadata, and other
    torchvision or Hugging Face files were trained on ImageNet with its classic 256/224 resize."""
    if pretrained:
        return torchvision_preprocess(torchvision_weights(arch), decode="reduced")
    if weights is None:
        return None
    path = Path(weights)
    if path.suffix == ".safetensors":

        try:
            return read_model_info(path).preprocess
        except ModelFileError:
            pass  # plain safetensors weights: no metadata
    return Preprocess(224, 256, IMAGENET_MEAN, IMAGENET_STD)


def download_pretrained(arch: str, tag: str | None = None) -> tuple[StateDict, list[str]]:
    weights = torchvision_weights(arch, tag)
    state, _ = read_weights(download_checkpoint(weights.url))
    return state, list(weights.meta["categories"])


def hf_config(folder: Path) -> dict:
    """A Hugging Face folder's ``config.json``, checked to describe a ResNet."""
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "resnet":
        raise WeightsError(f"{folder}/config.json: model_type {config.get('model_type')!r}, expected 'resnet'")
    return config


def hf_weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise WeightsError(f"{folder}: no model.safetensors or pytorch_model.bin beside config.json")


def _hf_state_dict(folder: Path) -> tuple[StateDict, dict]:
    config, weights = hf_config(folder), hf_weights_file(folder)
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(weights)), config
    return torch.load(weights, map_location="cpu", weights_only=True), config


_HF_NORM = {"weight": "weight", "bias": "bias", "running_mean": "running_mean",
            "running_var": "running_var", "num_batches_tracked": "num_batches_tracked"}


_LAYER_CONVS = ("conv1", "conv2", "conv3")
_LAYER_NORMS = ("bn1", "bn2", "bn3")
_HF_KEYS = [
    (r"resnet\.embedder\.embedder\.convolution\.weight", lambda m: "conv1.weight"),
    (r"resnet\.embedder\.embedder\.normalization\.(\w+)", lambda m: f"bn1.{_HF_NORM[m[1]]}"),
    (r"resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.weight",
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.0.weight"),
    (r"resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.(\w+)",
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.1.{_HF_NORM[m[3]]}"),
    (r"resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.convolution\.weight",
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.{_LAYER_CONVS[int(m[3])]}.weight"),
    (r"resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.normalization\.(\w+)",
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.{_LAYER_NORMS[int(m[3])]}.{_HF_NORM[m[4]]}"),
    (r"classifier\.1\.(weight|bias)", lambda m: f"fc.{m[1]}"),
]


def torchvision_key(hf_key: str) -> str:
    """The torchvision ResNet key of a transformers ``ResNetForImageClassification`` key."""
    for pattern, rename in _HF_KEYS:
        match = re.fullmatch(pattern, hf_key)
        if match:
            return rename(match)
    raise WeightsError(f"unexpected key {hf_key!r} in a Hugging Face ResNet checkpoint")


def convert_hf_resnet(state: StateDict, config: dict) -> StateDict:
    """transformers' ``ResNetForImageClassification`` keys -> torchvision's ResNet keys."""
    if config.get("downsample_in_bottleneck"):
        raise WeightsError("HF ResNet with downsample_in_bottleneck=True (ResNet v1) has no torchvision layout")
    return {torchvision_key(key): value for key, value in state.items()}


def _hf_classes(config: dict) -> list[str] | None:
    labels = config.get("id2label")
    if not labels:
        return None
    return [labels[str(i)] if str(i) in labels else labels[i] for i in range(len(labels))]


def read_weights(path: str | Path) -> tuple[StateDict, list[str] | None]:
    """A state dict in torchvision's layout (and class names where the file carries them)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise WeightsError(f"{path}: a folder without config.json (expected a Hugging Face ResNet folder)")
        state, config = _hf_state_dict(path)
        return convert_hf_resnet(state, config), _hf_classes(config)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":

        try:
            state, info = read_model_file(path)
            return state, info.classes
        except ModelFileError as e:
            if "without reslab metadata" not in str(e):
                raise WeightsError(str(e)) from e
            from safetensors.torch import load_file

            return load_file(str(path)), None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and tensor errors all mean "not a checkpoint we can read"
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({e})") from e
    for key in ("model_ema", "model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}, None


def adapt_state_dict(state: StateDict, model: nn.Module) -> StateDict:
    """Fit a checkpoint to a model: a head of another size, or none, is replaced (kept as the model's new,
    randomly initialised one), an RGB stem is summed over colours for one input channel, and a 2D network's
    kernels are inflated over time for its 3D twin (``models.inflate``)."""
    target = model.state_dict()
    state = dict(state)
    for key, value in state.items():
        wanted = target.get(key)
        if wanted is not None and value.dim() == 4 and wanted.dim() == 5 and wanted.shape[3:] == value.shape[2:]:
            state[key] = inflate_weight(value, wanted.shape[2])
    for key in ("fc.weight", "fc.bias"):
        if key in state and key in target and state[key].shape != target[key].shape:
            state[key] = target[key]
        elif key in state and key not in target:  # a backbone (features_only) has no head
            del state[key]
        elif key in target and key not in state:  # from a backbone: the model's new head
            state[key] = target[key]
    if "conv1.weight" in state and state["conv1.weight"].shape != target["conv1.weight"].shape:
        source, wanted = state["conv1.weight"], target["conv1.weight"]
        if source.shape[0] == wanted.shape[0] and source.shape[2:] == wanted.shape[2:] and wanted.shape[1] == 1:
            state["conv1.weight"] = source.sum(dim=1, keepdim=True)
    mismatched = [k for k in state if k in target and state[k].shape != target[k].shape]
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if mismatched or missing or unexpected:
        detail = "; ".join(
            f"{label}: {keys[:4]}{' ...' if len(keys) > 4 else ''}"
            for label, keys in (("shape differs", mismatched), ("missing", missing), ("unexpected", unexpected))
            if keys
        )
        raise WeightsError(f"weights do not fit the model ({detail})")
    return state


def load_into(model: nn.Module, state: StateDict) -> None:
    head_replaced = any(
        k.startswith("fc.") and k in state and state[k].shape != v.shape for k, v in model.state_dict().items()
    )
    model.load_state_dict(adapt_state_dict(state, model))
    if head_replaced:
        warnings.warn("the checkpoint's classifier has another number of classes: it was replaced", stacklevel=2)
