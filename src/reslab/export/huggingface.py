"""``--format huggingface``: a folder ``transformers`` loads with no code (``AutoModelForImageClassification``,
``pipeline("image-classification")``): ``config.json`` with ``id2label``, ``model.safetensors`` and a
``preprocessor_config.json`` that reproduces the model file's preprocessing.

Only torchvision-layout ResNets have a transformers equivalent (``ResNetForImageClassification``); the
weights are mapped key by key with the same table that reads Hugging Face checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.preprocess import PIL_RESAMPLE
from ..modelfile import ModelInfo
from ..models import architecture
from ..models.pretrained import hf_preprocess
from ..models.resnet import Bottleneck
from ..models.weights import torchvision_key

RESAMPLE_CODE = {name: code for code, name in PIL_RESAMPLE.items()}


def huggingface_refusal(info: ModelInfo) -> str | None:
    """Why a model has no transformers equivalent, or None."""
    spec, arch = info.spec, architecture(info.spec.arch)
    if arch.family != "imagenet" or spec.stem not in (None, "imagenet"):
        return (f"{spec.arch} with the {spec.stem or arch.family} stem has no transformers equivalent "
                f"(ResNetForImageClassification is the ImageNet ResNet-18/34/50/101/152 layout)")
    reasons = {"se": spec.se, "structured pruning": bool(spec.shapes), "features_only": spec.features_only}
    found = [name for name, present in reasons.items() if present]
    if found:
        return f"{spec.arch} with {', '.join(found)} has no transformers equivalent"
    return None


def _config(info: ModelInfo):
    import transformers

    arch = architecture(info.spec.arch)
    expansion = 4 if arch.block is Bottleneck else 1
    labels = dict(enumerate(info.classes))
    return transformers.ResNetConfig(
        num_channels=info.spec.in_chans, embedding_size=arch.widths[0], depths=list(arch.layers),
        hidden_sizes=[w * expansion for w in arch.widths], layer_type="bottleneck" if expansion == 4 else "basic",
        hidden_act="relu", downsample_in_first_stage=False, downsample_in_bottleneck=False,
        id2label=labels, label2id={name: i for i, name in labels.items()},
        # transformers' pipeline then gives each label's sigmoid instead of a softmax
        problem_type="multi_label_classification" if info.multilabel else "single_label_classification",
        architectures=["ResNetForImageClassification"])


def _processor(info: ModelInfo):
    """BiT's processor does exactly what ``Preprocess`` does: short side to ``resize_size``, centre crop."""
    import transformers

    pre = info.preprocess
    return transformers.BitImageProcessor(
        do_resize=True, size={"shortest_edge": pre.resize_size}, resample=RESAMPLE_CODE[pre.interpolation],
        do_center_crop=True, crop_size={"height": pre.image_size, "width": pre.image_size}, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=list(pre.mean), image_std=list(pre.std),
        do_convert_rgb=pre.in_chans == 3)


def write_huggingface(model: torch.nn.Module, info: ModelInfo, folder: Path) -> Path:
    """Write the transformers folder; refused (ValueError) for networks transformers cannot express."""
    refusal = huggingface_refusal(info)
    if refusal:
        raise ValueError(f"--format huggingface: {refusal}")
    try:
        import transformers
    except ImportError:
        raise ValueError("--format huggingface needs transformers: pip install 'reslab[hf]'") from None
    hf_model = transformers.ResNetForImageClassification(_config(info)).eval()
    ours = model.state_dict()
    hf_model.load_state_dict({key: ours[torchvision_key(key)] for key in hf_model.state_dict()})
    hf_model.save_pretrained(folder, safe_serialization=True)
    _processor(info).save_pretrained(folder)
    return folder


def transformers_logits(folder: Path, batch: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """What transformers computes from the folder alone (``from_pretrained``), and its class names in order;
    the folder's processor is read back too and must reproduce the model file's preprocessing."""
    import transformers

    hf_model = transformers.AutoModelForImageClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        logits = hf_model(pixel_values=torch.from_numpy(batch)).logits.numpy()
    labels = hf_model.config.id2label
    return logits, [labels[i] for i in range(len(labels))]


def check_preprocessing(folder: Path, info: ModelInfo) -> None:
    read = hf_preprocess(folder)
    pre = info.preprocess
    if (read.image_size, read.resize_size, read.mean, read.std, read.interpolation) != (
            pre.image_size, pre.resize_size, pre.mean, pre.std, pre.interpolation):
        raise ValueError(f"{folder}/preprocessor_config.json does not reproduce the model's preprocessing")
