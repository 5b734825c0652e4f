"""The typed training configuration: YAML file, then command-line flags over it.

Configuration flows one way: ``--config`` YAML and flags -> ``TrainConfig`` -> the code that uses it.
Every field is a flag (``lr`` -> ``--lr``, ``warmup_epochs`` -> ``--warmup-epochs``).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .atomic import write_text_atomic

# a switch that may be left to a measurement: true, false or "auto" (``--amp``, ``--no-amp``, ``--amp auto``)
AutoBool = bool | Literal["auto"]
# a number that may be left to a measurement (``--lr 0.05``, ``--lr auto``) or unset (a default that follows the run)
AutoFloat = float | Literal["auto"]


@dataclass
class TrainConfig:
    # run
    name: str | None = None  # run folder name under out_dir; default "<model>-<data>"
    out_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: bool = False
    # data
    data: str = "cifar10"  # cifar10 | cifar100 | path to an image folder
    cache_dir: str | None = None  # None: paths.cache_root() ($RESLAB_CACHE, else ~/.cache/reslab)
    image_column: str | None = None  # hf: data: default the first Image feature
    label_column: str | None = None  # hf: data: default the first ClassLabel feature
    image_size: int | None = None  # default: 32 for CIFAR-size data and networks, 224 otherwise
    progressive_sizes: list[int] = field(default_factory=list)  # training sizes of the first epochs
    preset: str = "auto"  # auto | cifar | imagenet
    auto_augment: str = "none"  # none | randaugment | trivialaugment
    color_jitter: float = 0.0
    random_erasing: float = 0.0
    crop_padding: int = 4  # cifar preset: pad by this much, then crop back
    mean: list[float] | None = None  # default: the dataset's own statistics
    std: list[float] | None = None
    eval_split: str = "val"  # val | test
    in_memory: bool | None = None  # default: yes for images of 64 px or less
    workers: int | None = None  # default: from the cores (see hardware.default_workers)
    decode: str = "auto"  # auto | gpu | cpu
    sampler: str = "none"  # none | balanced
    task: str = "multiclass"  # multiclass | multilabel
    # model
    model: str = "resnet18"
    stem: str | None = None  # imagenet | cifar; default: cifar for images of 64 px or less
    in_chans: int = 3
    pretrained: bool = False
    weights: str | None = None
    freeze: list[str] = field(default_factory=list)  # e.g. [all-but-head] or [conv1, bn1, layer1]
    dropout: float = 0.0
    zero_init_residual: bool = False
    se: bool = False
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adamw
    lr: AutoFloat | None = None  # default: lr_base scaled to the global batch (see train/defaults.py)
    lr_base: float | None = None  # at a batch of 256; default 0.1 for SGD, 0.001 for AdamW
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False
    schedule: str = "cosine"  # cosine | step | multistep | onecycle | constant
    warmup_epochs: float | None = None  # default: 5% of the run's steps, at most 300 (one-cycle: a quarter)
    backbone_lr_scale: float | None = None  # default: 0.1 when starting from pretrained weights, else 1
    step_size: int = 30
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    label_smoothing: float = 0.0
    class_weights: str = "none"  # none | balanced | effective
    effective_beta: float = 0.999
    pos_weight: str = "none"  # multilabel: none | balanced
    amp: AutoBool = "auto"  # auto: on for CUDA; on CPUs with native bf16, where bf16 measures faster
    amp_dtype: str = "bfloat16"  # bfloat16 | float16
    accumulate: int = 1
    clip_grad: float = 0.0  # max gradient norm; 0 = off
    channels_last: bool = True
    compile: bool = False
    sync_bn: bool = False
    tta: bool = False
    ema: bool = False
    ema_decay: float = 0.999
    eval_every: int = 1  # epochs between evaluations; the last epoch is always evaluated
    patience: int = 0  # early stopping: epochs without a better val top-1; 0 = off
    # knowledge distillation
    teacher: str | None = None  # a reslab model file with the same classes
    kd_alpha: float = 0.5  # weight of the teacher's soft targets; 1 - kd_alpha weighs the labels
    kd_temperature: float = 4.0

    def __post_init__(self) -> None:
        choices = {
            "preset": ("auto", "cifar", "imagenet"),
            "auto_augment": ("none", "randaugment", "trivialaugment"),
            "optimizer": ("sgd", "adamw"),
            "schedule": ("cosine", "step", "multistep", "onecycle", "constant"),
            "amp_dtype": ("bfloat16", "float16"),
            "eval_split": ("val", "test"),
            "sampler": ("none", "balanced"),
            "class_weights": ("none", "balanced", "effective"),
            "task": ("multiclass", "multilabel"),
            "pos_weight": ("none", "balanced"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"config field {name!r}: {getattr(self, name)!r} is not one of {allowed}")
        if self.stem not in (None, "imagenet", "cifar"):
            raise ValueError(f"config field 'stem': {self.stem!r} is not one of (None, 'imagenet', 'cifar')")
        if self.crop_padding < 0:
            raise ValueError(f"config field 'crop_padding' must be 0 or more, got {self.crop_padding}")
        for name in ("epochs", "batch_size", "accumulate", "in_chans", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"config field {name!r} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise ValueError(f"config field 'kd_alpha' must be between 0 and 1, got {self.kd_alpha}")
        if isinstance(self.lr, float | int) and self.lr < 0:
            raise ValueError(f"config field 'lr' must be 0 or more, got {self.lr}")
        if self.lr_base is not None and self.lr_base <= 0:
            raise ValueError(f"config field 'lr_base' must be positive, got {self.lr_base}")
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise ValueError(f"config field 'warmup_epochs' must be 0 or more, got {self.warmup_epochs}")
        if self.backbone_lr_scale is not None and not 0.0 <= self.backbone_lr_scale <= 1.0:
            raise ValueError(f"config field 'backbone_lr_scale' must be between 0 and 1, got {self.backbone_lr_scale}")
        if self.kd_temperature <= 0:
            raise ValueError(f"config field 'kd_temperature' must be positive, got {self.kd_temperature}")
        if not 0.0 < self.effective_beta < 1.0:
            raise ValueError(f"config field 'effective_beta' must be between 0 and 1 (exclusive), "
                             f"got {self.effective_beta}")
        if self.task == "multilabel" and self.class_weights != "none":
            raise ValueError("config field 'class_weights' weighs a softmax's classes; for multi-label data use "
                             "pos_weight (balanced: each label's negatives / positives)")
        if self.task == "multiclass" and self.pos_weight != "none":
            raise ValueError("config field 'pos_weight' is for --task multilabel; single-label data uses class_weights")
        if self.in_chans not in (1, 3):
            raise ValueError(f"config field 'in_chans' must be 1 or 3, got {self.in_chans}")

    @property
    def run_name(self) -> str:
        return self.name or f"{self.model}-{Path(self.data).name}"

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.run_name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


HELP = {
    "name": "run folder name under --out-dir (default: <model>-<data>)",
    "out_dir": "where run folders go",
    "seed": "seed of initialisation, data order, augmentation and the 70/20/10 split",
    "device": "auto | cpu | cuda | cuda:N",
    "resume": "continue the run in --out-dir/--name from its last checkpoint",
    "data": "cifar10 | cifar100 | path to an image folder (train/ val/ [test/], or one folder to split) "
            "| an .npz of uint8 arrays (x_train, y_train, [x_val, y_val], [x_test, y_test], [classes]) "
            "| hf:NAME[:CONFIG] (a Hugging Face dataset) | hf:DIR (save_to_disk or parquet files)",
    "cache_dir": "where CIFAR is looked for and downloaded, and hf: datasets' images are unpacked "
                 "(default: reslab's cache, $RESLAB_CACHE or ~/.cache/reslab)",
    "image_column": "hf: data: the image column (default: the first Image feature)",
    "label_column": "hf: data: the label column (default: the first ClassLabel feature)",
    "image_size": "training and evaluation size (default: the images' own up to 64 px, else 224)",
    "progressive_sizes": "progressive resizing: training image sizes of the first epochs, one per epoch "
                         "(e.g. 20,20,24,24,28,28); later epochs and evaluation use the image size",
    "preset": "augmentation: cifar (pad-crop + flip) | imagenet (RandomResizedCrop + flip) | auto",
    "auto_augment": "none | randaugment | trivialaugment",
    "color_jitter": "brightness/contrast/saturation jitter strength (0 = off)",
    "random_erasing": "probability of random erasing (0 = off)",
    "crop_padding": "cifar preset: zero padding before the random crop, in pixels (at most the shift)",
    "mean": "normalisation mean per channel (default: the dataset's or the weights')",
    "std": "normalisation std per channel",
    "eval_split": "split evaluated each epoch and picking the best model: val (10%% of train held out "
                  "where the dataset has no val) | test (train on all training images, report test accuracy)",
    "in_memory": "decode once into memory and augment whole batches (default: for images <= 64 px)",
    "workers": "data-loading processes for images read from disk (default: every core but one on a GPU, "
               "half of them on a CPU)",
    "decode": "where JPEGs from disk are decoded and augmented: gpu (nvJPEG, batch augmentation), cpu "
              "(reduced-scale decoding in workers), auto (gpu when training on one)",
    "sampler": "none | balanced: draw training images with replacement so that each class comes up equally "
               "often (seeded per epoch, sharded across processes)",
    "task": "multiclass (one class per image, softmax) | multilabel (any number of labels per image, a sigmoid "
            "each; --data is a folder with labels.csv (path,labels with ; or | between labels, optional split) or "
            "labels.json (path -> [labels]))",
    "model": "architecture (see `reslab models`)",
    "stem": "imagenet (7x7/2 + max-pool) | cifar (3x3/1) for ResNet-18..152",
    "in_chans": "input channels: 3, or 1 for grayscale",
    "pretrained": "start from torchvision's ImageNet weights (downloads them)",
    "weights": "start from a local .pth, reslab model file or Hugging Face ResNet folder",
    "freeze": "parts kept fixed: all-but-head, or names such as conv1,bn1,layer1",
    "dropout": "dropout before the classifier",
    "zero_init_residual": "start each residual branch at zero",
    "se": "squeeze-and-excitation blocks",
    "epochs": "training epochs",
    "batch_size": "images per step (per process)",
    "optimizer": "sgd | adamw",
    "lr": "peak learning rate (default: --lr-base scaled to the global batch; auto: a learning-rate range test "
          "picks it, as `reslab lr-find` does)",
    "lr_base": "learning rate at a batch of 256, scaled linearly (SGD) or by the square root (AdamW) to the global "
               "batch (batch size x processes x accumulation) when --lr is not given (default 0.1 for SGD, 0.001 "
               "for AdamW)",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum for SGD",
    "weight_decay": "weight decay (conv and linear weights only, unless --decay-norm-and-bias)",
    "decay_norm_and_bias": "also decay BatchNorm parameters and biases",
    "schedule": "cosine | step | multistep | onecycle | constant",
    "warmup_epochs": "linear warm-up length in epochs, fractions allowed (default: 5%% of the run's steps, at most "
                     "300; one-cycle: a quarter of the run)",
    "backbone_lr_scale": "the learning rate of every layer but the head, as a fraction of the head's (default: 0.1 "
                         "when starting from pretrained weights, 1 from scratch)",
    "step_size": "epochs between lr drops for the step schedule",
    "milestones": "epochs of lr drops for the multistep schedule, e.g. 30,60",
    "gamma": "lr factor at each drop",
    "label_smoothing": "label smoothing of the cross-entropy (multilabel: targets 1 -> 1 - eps/2, 0 -> eps/2)",
    "class_weights": "loss weight per class for imbalanced data: none | balanced (inverse frequency) | "
                     "effective (Cui et al.'s effective number of samples, see --effective-beta)",
    "effective_beta": "beta of --class-weights effective: 0.9 is close to equal weights, 0.9999 to inverse frequency",
    "pos_weight": "multilabel: none | balanced (each label's positive term weighted by its negatives / positives "
                  "in the training images, capped at 100)",
    "amp": "mixed precision (autocast): --amp, --no-amp, or --amp auto (on GPUs; on CPUs with native bf16, where a "
           "few training steps of this run measure bf16 at least 1.2x as fast as fp32; remembered per machine, model "
           "and batch)",
    "amp_dtype": "bfloat16 | float16 (float16 uses a grad scaler; bfloat16 falls back to it on GPUs without bf16)",
    "accumulate": "micro-batches per optimizer step",
    "clip_grad": "max gradient norm (0 = off)",
    "channels_last": "NHWC memory format (faster convolutions)",
    "compile": "torch.compile the model",
    "sync_bn": "synchronise BatchNorm statistics across GPUs in multi-process training",
    "tta": "evaluate each epoch with flip test-time augmentation (mean of the image's and its mirror's "
           "probabilities)",
    "ema": "keep an exponential moving average of the weights; evaluate and save it",
    "ema_decay": "EMA decay per optimizer step",
    "eval_every": "evaluate every N epochs (and after the last); best model and patience see those epochs",
    "patience": "stop after this many evaluations without a better val top-1 (0 = off)",
    "teacher": "distil from this reslab model file (same classes); it runs in eval mode without gradients",
    "kd_alpha": "weight of the teacher's softened targets (KL x T^2); the labels get 1 - kd_alpha",
    "kd_temperature": "softmax temperature T of teacher and student in the distillation term",
}


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) for ``X | None``, ``list[X]`` and plain types."""
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return inner[0], True
    return tp, False


def _coerce(name: str, value: Any, tp: Any) -> Any:
    if tp == AutoBool:
        if value is None or str(value).lower() in ("auto", "none", "null"):  # None: a run folder from before auto
            return "auto"
        try:
            return _coerce(name, value, bool)
        except ValueError:
            raise ValueError(f"config field {name!r}: expected true/false/auto, got {value!r}") from None
    if tp == AutoFloat | None:
        if str(value).lower() == "auto":
            return "auto"
        try:
            return _coerce(name, value, float | None)
        except ValueError:
            raise ValueError(f"config field {name!r}: expected a number or auto, got {value!r}") from None
    base, optional = _base_type(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if not optional:
            raise ValueError(f"config field {name!r} cannot be empty")
        return None
    origin = typing.get_origin(base)
    if origin is list:
        (item,) = typing.get_args(base)
        items = value if isinstance(value, list) else [v for v in str(value).split(",") if v]
        return [_coerce(name, v, item) for v in items]
    if base is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"config field {name!r}: expected true/false, got {value!r}")
    try:
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return base(value)
    except (TypeError, ValueError):
        raise ValueError(f"config field {name!r}: expected {base.__name__}, got {value!r}") from None


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    types_ = _field_types()
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; known fields: {', '.join(types_)}")
    return TrainConfig(**{k: _coerce(k, v, types_[k]) for k, v in data.items()})


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ValueError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of field: value, got {type(data).__name__}")
    return data


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field; unset flags stay ``None`` so the YAML value shows through."""
    parser.add_argument("--config", help="YAML file of config fields; flags override it")
    for name, tp in _field_types().items():
        base, _ = _base_type(tp)
        flag = "--" + name.replace("_", "-")
        default = TrainConfig.__dataclass_fields__[name].default
        shown = f" [{default}]" if default not in (None, dataclasses.MISSING) else ""
        text = HELP[name] + shown
        if tp == AutoBool:
            parser.add_argument(flag, dest=name, default=None, nargs="?", const=True, metavar="auto", help=text)
            parser.add_argument("--no-" + flag[2:], dest=name, action="store_const", const=False,
                                help=argparse.SUPPRESS)
        elif base is bool:
            parser.add_argument(flag, dest=name, default=None, action=argparse.BooleanOptionalAction, help=text)
        else:
            metavar = "A,B,..." if typing.get_origin(base) is list else name.upper()
            parser.add_argument(flag, dest=name, default=None, metavar=metavar, help=text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    data = load_yaml(args.config) if args.config else {}
    for name in _field_types():
        value = getattr(args, name, None)
        if value is not None:
            data[name] = value
    return config_from_dict(data)
