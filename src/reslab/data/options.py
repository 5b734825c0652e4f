"""What the data room takes: the training augmentation (``TrainConfig`` takes its fields), ``reslab pack`` and
``reslab check-data``. Flags, YAML and the Python API read these."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import check_choices, narrowed, option
from .preprocess import Clip


@dataclass
class AugmentOptions:
    """The training augmentation. Which path runs which operation: ``augmentations.AUGMENTATIONS``."""

    preset: str = option("auto", help="augmentation: cifar (pad-crop + flip) | imagenet (RandomResizedCrop + flip) | "
                         "auto", choices=("auto", "cifar", "imagenet"))
    auto_augment: str = option("none", help="none | randaugment | trivialaugment",
                               choices=("none", "randaugment", "trivialaugment"))
    color_jitter: float = option(0.0, help="brightness/contrast/saturation jitter strength, on every data path "
                                 "(0 = off)")
    random_erasing: float = option(0.0, help="probability of random erasing (0 = off)")
    crop_padding: int = option(4, help="cifar preset: zero padding before the random crop, in pixels (at most the "
                               "shift)")

    def __post_init__(self) -> None:
        self.check("augment option")

    def check(self, what: str) -> None:
        check_choices(self, what)
        if self.crop_padding < 0:
            raise ValueError(f"{what} 'crop_padding' must be 0 or more, got {self.crop_padding}")

    def augment_options(self) -> AugmentOptions:
        return narrowed(self, AugmentOptions)


@dataclass
class ClipOptions:
    """How clips are drawn from videos (``--task video``); a model file records them."""

    clip_frames: int = option(16, help="video: frames per clip")
    frame_stride: int = option(2, help="video: take every n-th frame (the sampling rate)")
    eval_clips: int = option(5, help="video: clips spread evenly over each video at evaluation; its answer is "
                             "their mean probability")
    flip: bool = option(True, help="video: random horizontal flips in training; turn off (--no-flip) for classes "
                        "a mirror changes, such as 'swipe left' and 'swipe right'")

    def __post_init__(self) -> None:
        self.check_clips("clip option")

    def check_clips(self, what: str) -> None:
        for name in ("clip_frames", "frame_stride", "eval_clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"{what} '{name}' must be 1 or more, got {getattr(self, name)}")

    def clip_options(self) -> ClipOptions:
        return narrowed(self, ClipOptions)

    def clip(self) -> Clip:
        """What a model file records of these options."""
        return Clip(self.clip_frames, self.frame_stride, self.eval_clips)


@dataclass(kw_only=True)
class PackOptions:
    data: str = option(positional=True, help="an image folder (train/ + val/ [+ test/], or one folder split 70/20/10)")
    out: str = option(positional=True, help="the pack to write, e.g. photos.npz")
    short_side: int = option(256, help="images are brought down to this short side")
    quality: int = option(90, help="JPEG quality of the re-encoded images")
    seed: int = option(0, help="the seed of the 70/20/10 split of a single folder")
    split_file: str | None = option(None, help="a run's split.json: pack exactly that split")
    threads: int = option(4, help="encoding threads")


@dataclass(kw_only=True)
class CheckDataOptions:
    path: str = option(positional=True, help="an image folder, a labels.csv/labels.json folder or a pack")
