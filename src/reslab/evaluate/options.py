"""What ``reslab eval`` and ``reslab explain`` take: flags, YAML and the Python API read these."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import ModelSource, check_choices, device_option, option
from .methods import DEFAULT_METHOD, METHOD_HELP, METHODS


@dataclass(kw_only=True)
class EvalOptions:
    data: str | None = option(None, help="cifar10, cifar100 or an image folder (default: the data it was trained on)")
    split: str = option("val", choices=("val", "test", "train"), help="the split evaluated")
    split_file: str | None = option(None, help="split.json of a folder split 70/20/10 (default: the one beside "
                                    "MODEL)")
    tta: bool = option(False, help="average with the horizontally flipped image")
    feature_maps: str | None = option(None, metavar="IMAGE", help="also draw conv1's feature maps for IMAGE")
    explain: str | None = option(None, choices=(None, *METHODS), const=DEFAULT_METHOD, help="also draw the worst "
                                 "images with Grad-CAM heat-maps of their predicted class, by this method "
                                 "(worst_explained.png; a .safetensors model file)")
    batch_size: int = option(256, help="images per step")
    workers: int | None = option(None, help="data-loading processes (default: from the cores)")
    device: str = device_option()
    precision: str = option("fp32", choices=("auto", "fp32", "bf16"), help="bf16: also evaluates in fp32 and "
                            "reports the change; auto: bf16 where native and checked on real images")

    def __post_init__(self) -> None:
        check_choices(self, "eval option")


@dataclass(kw_only=True)
class EvalCommand(ModelSource, EvalOptions):
    out: str | None = option(None, help="report folder (default: beside the model, eval-<split>/)")


@dataclass(kw_only=True)
class ExplainCommand(ModelSource):
    inputs: list[str] = option(positional=True, nargs="+", help="image files or folders (videos for a video model: a "
                               "strip of frames of each one's middle clip)")
    class_name: str | None = option(None, flag="--class", help="explain this class (default: each image's top "
                                    "class)")
    method: str = option(DEFAULT_METHOD, choices=METHODS, help=METHOD_HELP)
    layer: str | None = option(None, help="the module to take the heat-map from, e.g. layer4.1 (default: the last "
                               "block of the last stage)")
    out: str = option("explanations", help="folder of the overlay PNGs")
    device: str = device_option("cpu")

    def __post_init__(self) -> None:
        check_choices(self, "explain option")
