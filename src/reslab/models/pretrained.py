"""Models by name wherever a model file is taken: ``resnet50`` (torchvision's default ImageNet weights),
``resnet50:IMAGENET1K_V2`` (a named entry), ``hf:microsoft/resnet-50[@revision]`` (a Hugging Face Hub
repository) or a local Hugging Face folder.

Downloads go where their library keeps them (torch hub's ``checkpoints/``, the Hugging Face cache) and
happen once. Each is turned into a reslab model file (weights, class names, the weights' own
preprocessing) cached under ``paths.cache_root()/models``, keyed by the weights' content, so every
command (predict, serve, export, eval, quantize) then works on an ordinary model file.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ..data.preprocess import IMAGENET_MEAN, IMAGENET_STD, PIL_RESAMPLE, Clip, Preprocess
from ..modelfile import ModelInfo, ModelSpec, read_model_info, save_model_file
from ..names import HF_PREFIX, TORCHVISION_NAME, TORCHVISION_SUFFIXES
from ..paths import cache_root, file_digest
from .registry import ARCHITECTURES, build_model
from .resnet import Bottleneck
from .weights import (
    StateDict,
    WeightsError,
    download_checkpoint,
    hf_config,
    hf_weights_file,
    load_into,
    read_weights,
    torchvision_preprocess,
    torchvision_weights,
)

KINETICS_CLIP = Clip(frames=16, stride=2, clips=5)
NAMES_HELP = ("a model file, a torchvision name (resnet18 ... resnet152, r3d_18, mc3_18, r2plus1d_18, optionally "
              ":WEIGHTS_TAG) or hf:ORG/NAME")


def resolve_model(source: str | Path, weights: str | Path | None = None) -> Path:
    """The model file for what a user named: an existing model file as it is; a name or a Hugging Face
    folder converted (once) into a cached reslab model file. ``weights``: a local torchvision ``.pth``
    (or Hugging Face folder) to use instead of downloading, with a name."""
    text, path = str(source), Path(source)
    if text.startswith(HF_PREFIX):
        if weights is not None:
            raise WeightsError(f"{text}: --weights goes with a torchvision name; pass the Hugging Face folder itself")
        repo, _, revision = text.removeprefix(HF_PREFIX).partition("@")
        return _hf_model_file(_hub_folder(repo, revision or None), f"hf:{repo}")
    match = TORCHVISION_NAME.fullmatch(text)
    if match and not path.exists():
        return _torchvision_model_file(match[1], match[2], Path(weights) if weights is not None else None)
    if weights is not None:
        raise WeightsError(f"--weights {weights}: goes with a model name ({NAMES_HELP}), not with the file {text}")
    if path.is_dir() and (path / "config.json").is_file():
        return _hf_model_file(path, str(path))
    if path.suffix.lower() in TORCHVISION_SUFFIXES:
        raise WeightsError(f"{path}: a PyTorch checkpoint carries no architecture; name it, for example "
                           f"`resnet50 --weights {path}`")
    return path


def _cached_model_file(name: str) -> Path | None:
    path = cache_root() / "models" / f"{name}.safetensors"
    try:
        read_model_info(path)
        return path
    except ValueError:  # missing or damaged: rebuilt
        return None


def _write_model_file(name: str, arch: str, state: StateDict, classes: list[str], preprocess: Preprocess,
                      source: str, clip: Clip | None = None) -> Path:
    num_classes = state["fc.weight"].shape[0] if "fc.weight" in state else len(classes)
    if len(classes) != num_classes:
        classes = [f"class_{i}" for i in range(num_classes)]
    model = build_model(ModelSpec(arch=arch, num_classes=num_classes))
    load_into(model, state)
    info = ModelInfo(ModelSpec(arch=arch, num_classes=num_classes), classes, preprocess, {"pretrained": source},
                     task="video" if clip else "multiclass", clip=clip)
    return save_model_file(cache_root() / "models" / f"{name}.safetensors", model.eval(), info)


def _torchvision_model_file(arch: str, tag: str | None, weights: Path | None) -> Path:
    published = [n for n, a in ARCHITECTURES.items() if a.video == "torchvision" or (a.family == "imagenet"
                                                                                    and a.video is None)]
    if arch not in published:
        raise WeightsError(f"{arch}: torchvision has pretrained weights for {', '.join(published)} only")
    entry = torchvision_weights(arch, tag)
    checkpoint = weights if weights is not None else download_checkpoint(entry.url)
    if not checkpoint.is_file():
        raise WeightsError(f"--weights {checkpoint}: file not found")
    name = f"{arch}-{entry.name}-{file_digest(checkpoint)}"
    cached = _cached_model_file(name)
    if cached is not None:
        return cached
    state, _ = read_weights(checkpoint)
    source = f"torchvision {arch} {entry.name} ({checkpoint.name})"
    # torchvision's Kinetics-400 recipe: 16-frame clips of videos resampled to 15 fps (about every 2nd frame of a
    # 30 fps file), 5 clips per video at evaluation
    clip = KINETICS_CLIP if ARCHITECTURES[arch].video == "torchvision" else None
    return _write_model_file(name, arch, state, list(entry.meta["categories"]), torchvision_preprocess(entry), source,
                             clip)


def _hub_folder(repo: str, revision: str | None) -> Path:
    """The repository's files in the Hugging Face cache (downloaded when online and not there yet)."""
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError:
        raise WeightsError("hf: models need huggingface_hub: pip install 'reslab[hf]'") from None
    files = ["config.json", "preprocessor_config.json", "model.safetensors"]
    try:
        folder = Path(snapshot_download(repo, revision=revision, allow_patterns=files))
        if not (folder / "model.safetensors").is_file():  # older repositories: pickled weights only
            folder = Path(snapshot_download(repo, revision=revision, allow_patterns=[*files[:2], "pytorch_model.bin"]))
    except Exception as e:  # offline, no such repository, gated: huggingface_hub's errors all derive differently
        detail = " ".join(str(e).split())
        raise WeightsError(
            f"hf:{repo}: could not get it from the Hugging Face Hub or its cache {constants.HF_HUB_CACHE} "
            f"({type(e).__name__}: {detail}). Offline? Run `hf download {repo}` on a machine that is online, copy "
            f"the folder here and pass the folder instead of hf:{repo}") from e
    return folder


def hf_architecture(config: dict) -> str:
    """The torchvision-layout ResNet a transformers ``ResNetConfig`` describes."""
    bottleneck = config.get("layer_type") == "bottleneck"
    depths = tuple(config.get("depths", ()))
    for name, arch in ARCHITECTURES.items():
        if arch.family == "imagenet" and (arch.block is Bottleneck) == bottleneck and arch.layers == depths:
            return name
    raise WeightsError(f"a Hugging Face ResNet with {config.get('layer_type')} blocks {list(depths)} has no "
                       f"torchvision-layout equivalent (ResNet-18/34/50/101/152)")




def hf_preprocess(folder: Path) -> Preprocess:
    """The repository's image processor settings (``preprocessor_config.json``) as a ``Preprocess``.

    ConvNext-style processors (``microsoft/resnet-*``) resize the short side to ``shortest_edge / crop_pct``
    and crop ``shortest_edge``; others resize the short side and crop ``crop_size``."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return Preprocess(224, 256, IMAGENET_MEAN, IMAGENET_STD)
    cfg = json.loads(path.read_text())
    size = cfg.get("size", 224)
    short = size if isinstance(size, int) else size.get("shortest_edge")
    mean, std = tuple(cfg.get("image_mean", IMAGENET_MEAN)), tuple(cfg.get("image_std", IMAGENET_STD))
    interpolation = PIL_RESAMPLE.get(cfg.get("resample", 2), "bilinear")
    crop_size = cfg.get("crop_size")
    if short is not None and "crop_pct" in cfg and short < 384:
        return Preprocess(short, int(short / cfg["crop_pct"]), mean, std, 3, interpolation)
    if short is not None and cfg.get("do_center_crop") and crop_size:
        crop = crop_size if isinstance(crop_size, int) else crop_size["height"]
        return Preprocess(crop, short, mean, std, 3, interpolation)
    side = short or (size.get("height") if isinstance(size, dict) else None) or 224
    warnings.warn(f"{path}: resize {size} is approximated by a short-side resize to {side} and a centre crop",
                  stacklevel=2)
    return Preprocess(side, side, mean, std, 3, interpolation)


def _hf_model_file(folder: Path, source: str) -> Path:
    arch = hf_architecture(hf_config(folder))
    name = f"hf-{arch}-{file_digest(hf_weights_file(folder))}"
    cached = _cached_model_file(name)
    if cached is not None:
        return cached
    converted, classes = read_weights(folder)
    return _write_model_file(name, arch, converted, classes or [], hf_preprocess(folder), source)
