"""What the data room takes: the training augmentation (``TrainConfig`` takes its fields), ``reslab pack`` and
``reslab check-data``. Flags, YAML and the Python API read these."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..options import check_choices, option


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
        """These fields alone (of a ``TrainConfig``, say)."""
        return AugmentOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(AugmentOptions)})


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
