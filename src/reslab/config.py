"""The typed training configuration: YAML file, then command-line flags over it.

Configuration flows one way: ``--config`` YAML and flags -> ``TrainConfig`` -> the code that uses it.
Every field is a flag (``lr`` -> ``--lr``, ``warmup_epochs`` -> ``--warmup-epochs``), its default, type,
choices and help declared with the field (``options.option``).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .atomic import write_text_atomic
from .data.options import AugmentOptions, ClipOptions
from .options import AutoBool, AutoFloat, add_flags, device_option, from_args, from_dict, option
from .options import load_yaml as load_yaml


@dataclass
class TrainConfig(ClipOptions, AugmentOptions):
    """Every field of a training run; the augmentation's and the video clips' come first, from ``AugmentOptions``
    and ``ClipOptions``."""

    # run
    name: str | None = option(None, help="run folder name under --out-dir (default: <model>-<data>)")
    out_dir: str = option("runs", help="where run folders go")
    seed: int = option(0, help="seed of initialisation, data order, augmentation and the 70/20/10 split")
    device: str = device_option()
    resume: bool = option(False, help="continue the run in --out-dir/--name from its last checkpoint")
    # data
    data: str = option("cifar10", help="cifar10 | cifar100 | path to an image folder (train/ val/ [test/], or one "
                       "folder to split) | an .npz of uint8 arrays (x_train, y_train, [x_val, y_val], [x_test, "
                       "y_test], [classes]) | hf:NAME[:CONFIG] (a Hugging Face dataset) | hf:DIR (save_to_disk or "
                       "parquet files)")
    cache_dir: str | None = option(None, help="where CIFAR is looked for and downloaded, and hf: datasets' images "
                                   "are unpacked (default: reslab's cache, $RESLAB_CACHE or ~/.cache/reslab)")
    image_column: str | None = option(None, help="hf: data: the image column (default: the first Image feature)")
    label_column: str | None = option(None, help="hf: data: the label column (default: the first ClassLabel feature)")
    image_size: int | None = option(None, help="training and evaluation size (default: the images' own up to 64 px, "
                                    "else 224)")
    progressive_sizes: list[int] = option(factory=list, help="progressive resizing: training image sizes of the "
                                          "first epochs, one per epoch (e.g. 20,20,24,24,28,28); later epochs and "
                                          "evaluation use the image size")
    mean: list[float] | None = option(None, help="normalisation mean per channel (default: the dataset's or the "
                                      "weights')")
    std: list[float] | None = option(None, help="normalisation std per channel")
    eval_split: str = option("val", help="split evaluated each epoch and picking the best model: val (10%% of train "
                             "held out where the dataset has no val) | test (train on all training images, report "
                             "test accuracy)", choices=("val", "test"))
    in_memory: bool | None = option(None, help="decode once into memory and augment whole batches (default: for "
                                    "images <= 64 px)")
    workers: int | None = option(None, help="data-loading processes for images read from disk (default: every core "
                                 "but one on a GPU, half of them on a CPU)")
    decode: str = option("auto", help="where JPEGs from disk are decoded and augmented: gpu (nvJPEG, batch "
                         "augmentation), cpu (reduced-scale decoding in workers), auto (gpu when training on one); "
                         "videos: gpu decodes them with NVDEC, auto and cpu in CPU workers",
                         choices=("auto", "gpu", "cpu"))
    sampler: str = option("none", help="none | balanced: draw training images with replacement so that each class "
                          "comes up equally often (seeded per epoch, sharded across processes)",
                          choices=("none", "balanced"))
    task: str = option("multiclass", help="multiclass (one class per image, softmax) | multilabel (any number of "
                       "labels per image, a sigmoid each; --data is a folder with labels.csv (path,labels with ; or "
                       "| between labels, optional split) or labels.json (path -> [labels])) | video (one class per "
                       "clip; --data is a folder of class folders of videos, or a CSV path,label[,start,end]; "
                       "--model a video network: r3d_18, mc3_18, r2plus1d_18, resnet18-3d ...)",
                       choices=("multiclass", "multilabel", "video"))
    # model
    model: str = option("resnet18", help="architecture (see `reslab models`)")
    stem: str | None = option(None, help="imagenet (7x7/2 + max-pool) | cifar (3x3/1) for ResNet-18..152",
                              choices=(None, "imagenet", "cifar"))
    in_chans: int = option(3, help="input channels: 3, or 1 for grayscale")
    pretrained: bool = option(False, help="start from torchvision's ImageNet weights (downloads them)")
    weights: str | None = option(None, help="start from a local .pth, reslab model file or Hugging Face ResNet folder")
    init: str | None = option(None, help="start from the backbone of a reslab model file (reslab pretrain's "
                              "backbone.safetensors, or any classifier's) with a new head for this data; its "
                              "stem and normalisation come with it")
    freeze: list[str] = option(factory=list, help="parts kept fixed: all-but-head, or names such as conv1,bn1,layer1")
    dropout: float = option(0.0, help="dropout before the classifier")
    zero_init_residual: bool = option(False, help="start each residual branch at zero")
    se: bool = option(False, help="squeeze-and-excitation blocks")
    # optimisation
    epochs: int = option(10, help="training epochs")
    batch_size: int = option(128, help="images per step (per process)")
    optimizer: str = option("sgd", help="sgd | adamw | lars (layer-wise trust ratios for large batches, as in "
                            "SimCLR's recipe; lightly's, in the ssl extra)", choices=("sgd", "adamw", "lars"))
    lr: AutoFloat | None = option(None, help="peak learning rate (default: --lr-base scaled to the global batch; "
                                  "auto: a learning-rate range test picks it, as `reslab lr-find` does)")
    lr_base: float | None = option(None, help="learning rate at a batch of 256, scaled linearly (SGD, LARS) or by "
                                   "the square root (AdamW) to the global batch (batch size x processes x "
                                   "accumulation) when --lr is not given (default 0.1 for SGD, 0.001 for AdamW, 0.3 "
                                   "for LARS)")
    momentum: float = option(0.9, help="SGD and LARS momentum")
    nesterov: bool = option(True, help="Nesterov momentum for SGD")
    weight_decay: float = option(5e-4, help="weight decay (conv and linear weights only, unless "
                                 "--decay-norm-and-bias)")
    decay_norm_and_bias: bool = option(False, help="also decay BatchNorm parameters and biases")
    schedule: str = option("cosine", help="cosine | step | multistep | onecycle | constant",
                           choices=("cosine", "step", "multistep", "onecycle", "constant"))
    warmup_epochs: float | None = option(None, help="linear warm-up length in epochs, fractions allowed (default: "
                                         "5%% of the run's steps, at most 300; one-cycle: a quarter of the run)")
    backbone_lr_scale: float | None = option(None, help="the learning rate of every layer but the head, as a "
                                             "fraction of the head's (default: 0.1 when starting from pretrained "
                                             "weights, 1 from scratch)")
    step_size: int = option(30, help="epochs between lr drops for the step schedule")
    milestones: list[int] = option(factory=list, help="epochs of lr drops for the multistep schedule, e.g. 30,60")
    gamma: float = option(0.1, help="lr factor at each drop")
    label_smoothing: float = option(0.0, help="label smoothing of the cross-entropy (multilabel: targets 1 -> 1 - "
                                    "eps/2, 0 -> eps/2)")
    class_weights: str = option("none", help="loss weight per class for imbalanced data: none | balanced (inverse "
                                "frequency) | effective (Cui et al.'s effective number of samples, see "
                                "--effective-beta)", choices=("none", "balanced", "effective"))
    effective_beta: float = option(0.999, help="beta of --class-weights effective: 0.9 is close to equal weights, "
                                   "0.9999 to inverse frequency")
    pos_weight: str = option("none", help="multilabel: none | balanced (each label's positive term weighted by its "
                             "negatives / positives in the training images, capped at 100)",
                             choices=("none", "balanced"))
    amp: AutoBool = option("auto", help="mixed precision (autocast): --amp, --no-amp, or --amp auto (on GPUs; on "
                           "CPUs with native bf16, where a few training steps of this run measure bf16 at least 1.2x "
                           "as fast as fp32; remembered per machine, model and batch)")
    amp_dtype: str = option("bfloat16", help="bfloat16 | float16 (float16 uses a grad scaler; bfloat16 falls back to "
                            "it on GPUs without bf16)", choices=("bfloat16", "float16"))
    accumulate: int = option(1, help="micro-batches per optimizer step")
    clip_grad: float = option(0.0, help="max gradient norm (0 = off)")
    channels_last: bool = option(True, help="NHWC memory format (faster convolutions)")
    compile: bool = option(False, help="torch.compile the model")
    sync_bn: bool = option(False, help="synchronise BatchNorm statistics across GPUs in multi-process training")
    tta: bool = option(False, help="evaluate each epoch with flip test-time augmentation (mean of the image's and "
                       "its mirror's probabilities)")
    ema: bool = option(False, help="keep an exponential moving average of the weights; evaluate and save it")
    ema_decay: float = option(0.999, help="EMA decay per optimizer step")
    eval_every: int = option(1, help="evaluate every N epochs (and after the last); best model and patience see "
                             "those epochs")
    patience: int = option(0, help="stop after this many evaluations without a better val top-1 (0 = off)")
    # knowledge distillation
    teacher: str | None = option(None, help="distil from this reslab model file (same classes); it runs in eval mode "
                                 "without gradients")
    kd_alpha: float = option(0.5, help="weight of the teacher's softened targets (KL x T^2); the labels get 1 - "
                             "kd_alpha")
    kd_temperature: float = option(4.0, help="softmax temperature T of teacher and student in the distillation term")

    def __post_init__(self) -> None:
        self.check("config field")
        self.check_clips("config field")
        if self.task != "video" and not self.flip:
            raise ValueError("config field 'flip': turning flips off is for --task video (images are always "
                             "flipped)")
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
        if self.init is not None and (self.pretrained or self.weights is not None):
            raise ValueError("config field 'init' is a starting point of its own: leave out pretrained and weights")
        if self.in_chans not in (1, 3):
            raise ValueError(f"config field 'in_chans' must be 1 or 3, got {self.in_chans}")

    @property
    def run_name(self) -> str:
        return self.name or f"{self.model}-{Path(self.data).name}"

    @property
    def starting_file(self) -> str | None:
        """The file whose weights the run starts from, whole (``weights``) or without its head (``init``)."""
        return self.weights or self.init

    @property
    def transfer(self) -> bool:
        """Whether the run starts from learned weights rather than a random initialisation."""
        return self.pretrained or self.starting_file is not None

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.run_name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))




T = TypeVar("T", bound=TrainConfig)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return from_dict(TrainConfig, data, "config field")


def add_config_flags(parser: argparse.ArgumentParser, config: type[TrainConfig] = TrainConfig,
                     skip: tuple[str, ...] = ()) -> None:
    """One flag per config field (but ``skip``); unset flags stay ``None`` so the YAML value shows through."""
    parser.add_argument("--config", help="YAML file of config fields; flags override it")
    add_flags(parser, config, skip)


def config_from_args(args: argparse.Namespace, config: type[T] = TrainConfig) -> T:  # type: ignore[assignment]
    return from_args(args, config, "config field", yaml_file=args.config)


@dataclass(kw_only=True)
class ModelsOptions:
    """What ``reslab models`` takes."""

    image_size: int | None = option(None, help="MACs at this input size (default: each family's own)")
