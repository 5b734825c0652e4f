"""The two random views of each image that self-supervised methods compare, as lightly's transforms make them.

Each method's numbers (crop scale, colour jitter, grey, blur, solarisation) are read from lightly's own transform
for it (``SimCLRTransform``, ``MoCoV2Transform``, ``BYOLView1Transform``/``BYOLView2Transform``). Images read from
disk go through that transform itself, per image, in the loader's workers (``ImageViews``). Small images held in
memory are augmented a whole batch at a time on their device by ``BatchViews``, with the same numbers and
reslab's batch operations: RandomResizedCrop as one ``roi_align``, then flip, jitter, hue, grey and solarisation.
Two differences: the jitter's four operations run in one fixed order (torchvision shuffles it per image), and
images of 64 px or less are not blurred, as in lightly's own CIFAR-10 benchmark.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..data.batch_ops import batch_resized_crops, color_jitter, flip_where, gray_where, hue_shift, solarize_where
from ..data.crops import policy_seed
from ..data.decoding import Source
from ..data.pipeline import SMALL_IMAGE
from ..data.preprocess import Preprocess
from .config import METHOD_CHOICES

RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect ratios, as torchvision draws them
CROP_TRIES = 10


@dataclass(frozen=True)
class ViewRecipe:
    """One view's random operations and their strengths."""

    min_scale: float  # the crop's smallest share of the image's area
    flip: float  # probability of a horizontal flip
    jitter: float  # probability of the colour jitter
    brightness: float
    contrast: float
    saturation: float
    hue: float
    gray: float  # probability of turning grey
    solarize: float = 0.0  # probability of solarisation


def _lightly_transforms(method: str) -> tuple[type, type]:
    """lightly's transform classes of the method's first and second views."""
    from lightly.transforms import MoCoV2Transform, SimCLRTransform  # lightly: the ssl extra
    from lightly.transforms.byol_transform import BYOLView1Transform, BYOLView2Transform

    return {"simclr": (SimCLRTransform, SimCLRTransform), "moco": (MoCoV2Transform, MoCoV2Transform),
            "byol": (BYOLView1Transform, BYOLView2Transform)}[method]


def lightly_transform(method: str, pre: Preprocess):
    """lightly's transform of the method at the model's size and normalisation: a PIL image -> [view, view]."""
    size = pre.image_size
    options = {"input_size": size, "normalize": {"mean": list(pre.mean), "std": list(pre.std)},
               **({"gaussian_blur": 0.0} if size <= SMALL_IMAGE else {})}  # lightly's CIFAR-10 benchmark: no blur
    first, second = _lightly_transforms(method)
    if method == "byol":
        from lightly.transforms import BYOLTransform

        return BYOLTransform(view_1_transform=first(**options), view_2_transform=second(**options))
    return first(**options)


def _recipe(transform: type) -> ViewRecipe:
    defaults = {name: p.default for name, p in inspect.signature(transform.__init__).parameters.items()}
    strength = defaults["cj_strength"]
    return ViewRecipe(min_scale=defaults["min_scale"], flip=defaults["hf_prob"], jitter=defaults["cj_prob"],
                      brightness=strength * defaults["cj_bright"], contrast=strength * defaults["cj_contrast"],
                      saturation=strength * defaults["cj_sat"], hue=strength * defaults["cj_hue"],
                      gray=defaults["random_gray_scale"], solarize=defaults.get("solarization_prob", 0.0))


def method_recipes(method: str) -> tuple[ViewRecipe, ViewRecipe]:
    """The two views of ``method`` with lightly's numbers."""
    if method not in METHOD_CHOICES:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHOD_CHOICES)}")
    first, second = _lightly_transforms(method)
    return _recipe(first), _recipe(second)


def crop_boxes(n: int, size: int, min_scale: float, generator: torch.Generator) -> Tensor:
    """(n, 4) boxes ``(left, top, width, height)`` in a square image of ``size`` px, drawn as torchvision's
    RandomResizedCrop draws them: an area share in ``(min_scale, 1)`` and a log-uniform aspect ratio, retried up to
    10 times until the box fits, else the whole image."""
    area = size * size * (min_scale + (1 - min_scale) * torch.rand((n, CROP_TRIES), generator=generator))
    low, high = math.log(RATIO[0]), math.log(RATIO[1])
    ratio = torch.exp(low + (high - low) * torch.rand((n, CROP_TRIES), generator=generator))
    width, height = torch.sqrt(area * ratio).round(), torch.sqrt(area / ratio).round()
    fits = (width >= 1) & (width <= size) & (height >= 1) & (height <= size)
    first = fits.float().argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)
    width = torch.where(found, width.gather(1, first)[:, 0], torch.full((n,), float(size)))
    height = torch.where(found, height.gather(1, first)[:, 0], torch.full((n,), float(size)))
    left = torch.floor(torch.rand(n, generator=generator) * (size - width + 1))
    top = torch.floor(torch.rand(n, generator=generator) * (size - height + 1))
    return torch.stack([left, top, width, height], dim=1)


@dataclass
class ViewDraws:
    """One view's random draws for every sample of an epoch."""

    boxes: Tensor  # (N, 4)
    flip: Tensor  # (N,) bool
    jitter: Tensor  # (N,) bool: jittered at all
    factors: Tensor  # (N, 3) brightness, contrast and saturation factors
    hue: Tensor  # (N,) turns of the colour wheel
    gray: Tensor  # (N,) bool
    solarize: Tensor  # (N,) bool

    def __getitem__(self, index: Tensor) -> ViewDraws:
        return ViewDraws(*(getattr(self, name)[index] for name in self.__dataclass_fields__))


def _uniform(n: int, spread: float, generator: torch.Generator, centre: float = 1.0) -> Tensor:
    low = max(0.0, centre - spread) if centre else -spread
    return low + (centre + spread - low) * torch.rand(n, generator=generator)


def draw_view(recipe: ViewRecipe, n: int, size: int, generator: torch.Generator) -> ViewDraws:
    boxes = crop_boxes(n, size, recipe.min_scale, generator)
    flip = torch.rand(n, generator=generator) < recipe.flip
    jitter = torch.rand(n, generator=generator) < recipe.jitter
    factors = torch.stack([_uniform(n, s, generator) for s in (recipe.brightness, recipe.contrast,
                                                                 recipe.saturation)], dim=1)
    hue = _uniform(n, recipe.hue, generator, centre=0.0)
    gray = torch.rand(n, generator=generator) < recipe.gray
    solarize = torch.rand(n, generator=generator) < recipe.solarize
    return ViewDraws(boxes, flip, jitter, factors, hue, gray, solarize)


@dataclass
class PairDraws:
    first: ViewDraws
    second: ViewDraws

    def __getitem__(self, index: Tensor) -> PairDraws:
        return PairDraws(self.first[index], self.second[index])


def make_view(batch: Tensor, recipe: ViewRecipe, draws: ViewDraws, size: int) -> Tensor:
    """uint8 (N, 3, H, W) -> one view, float32 0..255 (N, 3, size, size)."""
    x = batch_resized_crops(batch, draws.boxes, size)
    x = flip_where(x, draws.flip)
    if recipe.jitter > 0:
        jittered = hue_shift(color_jitter(x, draws.factors), draws.hue) if recipe.hue > 0 else color_jitter(
            x, draws.factors)
        x = torch.where(draws.jitter.to(x.device)[:, None, None, None], jittered, x)
    if recipe.gray > 0:
        x = gray_where(x, draws.gray)
    if recipe.solarize > 0:
        x = solarize_where(x, draws.solarize)
    return x


class BatchViews:
    """The in-memory loader's augmentation (``TensorLoader``'s ``draw``/``__call__``): a uint8 batch -> its two
    views, normalised, (N, 2, 3, H, W). The draws are made for every sample of an epoch at once with the loader's
    seeded generator, so a resumed run repeats them."""

    def __init__(self, recipes: tuple[ViewRecipe, ViewRecipe], pre: Preprocess) -> None:
        self.recipes, self.pre = recipes, pre

    def draw(self, n: int, generator: torch.Generator) -> PairDraws:
        size = self.pre.image_size
        return PairDraws(*(draw_view(recipe, n, size, generator) for recipe in self.recipes))

    def __call__(self, batch: Tensor, draws: PairDraws) -> Tensor:
        views = [make_view(batch, recipe, d, self.pre.image_size).round().to(torch.uint8)
                 for recipe, d in zip(self.recipes, (draws.first, draws.second))]
        return torch.stack([self.pre.normalize(v) for v in views], dim=1)


@dataclass
class ImageViews:
    """A worker's sample on disk: the image through lightly's transform of the method -> its two views, normalised,
    float32 (2, 3, size, size). Each draw is seeded by (seed, epoch, index), so that it depends on neither the
    workers nor the batching, and a resumed run repeats it."""

    method: str
    pre: Preprocess
    seed: int

    def __post_init__(self) -> None:
        self.transform = lightly_transform(self.method, self.pre)

    def __call__(self, source: Source, index: int, epoch: int) -> np.ndarray:
        image = self.pre.open(source, name=str(source) if not isinstance(source, bytes) else f"image {index}")
        seed = policy_seed(self.seed, epoch, index)
        state = np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)  # lightly's blur and solarisation draw from numpy
            try:
                views = self.transform(image)
            finally:
                np.random.set_state(state)
        return torch.stack(views).numpy()

