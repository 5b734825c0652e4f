"""What ``reslab quantize`` and ``reslab prune`` take: flags, YAML and the Python API read these."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import ModelSource, check_choices, device_option, option

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
CALIBRATION_BATCH = 10  # the histogram calibrators need batches of one size
PRUNING_METHODS = ("l1-unstructured", "structured")


@dataclass(kw_only=True)
class QuantizeOptions:
    calib_data: str = option(required=True, help="cifar10, cifar100 or an image folder: its train split calibrates")
    calib_images: int = option(300, help="training images used to calibrate")
    method: str = option("minmax", choices=CALIBRATION_METHODS, help="how activation ranges are calibrated")
    val_data: str | None = option(None, help="data for the before/after top-1 (default: --calib-data)")
    val_split: str = option("val", choices=("val", "test"), help="the split the before/after top-1 is measured on")
    val_images: int | None = option(None, help="at most this many validation images (default: all)")
    max_drop: float = option(1.0, help="refuse a top-1 (mAP for a multi-label model) drop above this many points")
    force: bool = option(False, help="write the INT8 model whatever its drop")
    reduce_range: str = option("auto", choices=("auto", "on", "off"), help="7-bit weights; auto: on for x86 CPUs "
                               "without VNNI, where u8 x s8 products saturate")
    per_channel: bool = option(True, help="one weight scale per output channel")
    seed: int = option(0, help="seed of the calibration images' choice")
    cache_dir: str | None = option(None, help="where CIFAR is looked for (default: reslab's cache)")

    def __post_init__(self) -> None:
        check_choices(self, "quantize option")
        if self.calib_images < CALIBRATION_BATCH:
            raise ValueError(f"calib_images must be at least {CALIBRATION_BATCH}, got {self.calib_images}")


@dataclass(kw_only=True)
class QuantizeCommand(ModelSource, QuantizeOptions):
    out: str | None = option(None, help="output .onnx (default: MODEL-int8.onnx beside MODEL)")


@dataclass(kw_only=True)
class PruneOptions:
    amount: float = option(required=True, help="fraction of weights (l1-unstructured) or of block-internal "
                           "channels (structured)")
    method: str = option("l1-unstructured", choices=PRUNING_METHODS, help="l1-unstructured: zeros, smaller files; "
                         "structured: fewer channels, faster")
    data: str | None = option(None, help="data for top-1 and fine-tuning (default: what the model was trained on)")
    finetune_epochs: int = option(0, help="structured: epochs of fine-tuning after")
    lr: float = option(0.01, help="fine-tuning learning rate (cosine)")
    batch_size: int = option(128, help="images per fine-tuning and evaluation step")
    val_images: int | None = option(None, help="at most this many validation images (default: all)")
    device: str = device_option()
    seed: int = option(0, help="seed of the fine-tuning")
    cache_dir: str | None = option(None, help="where CIFAR is looked for (default: reslab's cache)")

    def __post_init__(self) -> None:
        check_choices(self, "prune option")
        if not 0 < self.amount < 1:
            raise ValueError(f"amount must be a fraction between 0 and 1 (exclusive), got {self.amount}")
        if self.finetune_epochs and self.method != "structured":
            raise ValueError("--finetune-epochs applies to structured pruning (unstructured zeros would grow back)")


@dataclass(kw_only=True)
class PruneCommand(PruneOptions):
    model: str = option(positional=True, help="a reslab model file")
    out: str | None = option(None, help="output model file (default: MODEL-pruned.safetensors)")
