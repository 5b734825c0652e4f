"""JPEG decoding to tensors, the library chosen in one place: TorchCodec where it is installed and loads
(it needs torch 2.11 or newer), else torchvision.io, whose image decoding TorchCodec supersedes. Both
read JPEGs on the CPU (libjpeg-turbo) and on a GPU (nvJPEG, a batch per call). Pillow stays the decoder
of every other format and of reduced-scale JPEG decoding (``images.open_image``).

Every function here returns images upright: TorchCodec turns a JPEG by its EXIF orientation itself,
torchvision.io on the CPU when asked to and never on the GPU. Whether a device's decoder turned the
image is measured once on a small rotated JPEG rather than assumed, so that no path turns an image
twice or not at all.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .batch_ops import orient

DecodeJpegs = Callable[[list[Tensor], str, torch.device], list[Tensor]]


@functools.cache
def jpeg_library() -> str:
    """``torchcodec`` where it is installed and its operators load here, else ``torchvision``."""
    try:
        from torchcodec.decoders import decode_jpeg  # noqa: F401  (an optional library; loads native code)
    except (ImportError, OSError, RuntimeError):  # not installed, or built for another torch
        return "torchvision"
    return "torchcodec"


def _torchcodec(datas: list[Tensor], mode: str, device: torch.device) -> list[Tensor]:
    from torchcodec.decoders import decode_jpeg  # an optional library, chosen by jpeg_library()

    return decode_jpeg(datas, mode=mode, device=device)


def _torchvision(datas: list[Tensor], mode: str, device: torch.device) -> list[Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # its deprecation names TorchCodec, which is used wherever it loads
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if device.type == "cpu":  # one call per image: the batched form is for nvJPEG
            return [decode_jpeg(d, mode=ImageReadMode[mode], apply_exif_orientation=True) for d in datas]
        return decode_jpeg(datas, mode=ImageReadMode[mode], device=device)


LIBRARIES: dict[str, DecodeJpegs] = {"torchcodec": _torchcodec, "torchvision": _torchvision}


def _decoder() -> DecodeJpegs:
    return LIBRARIES[jpeg_library()]


def _mode(channels: int) -> str:
    return "RGB" if channels == 3 else "GRAY"


def decode_jpeg(data: Tensor, channels: int) -> Tensor:
    """One JPEG's bytes (uint8, 1-D) -> upright uint8 (C, H, W) on the CPU. Raises RuntimeError where the
    library refuses the file (CMYK, 12-bit, truncated...): Pillow then decodes it or names the problem."""
    return _decoder()([data], _mode(channels), torch.device("cpu"))[0]


def decode_jpegs(datas: list[Tensor], orientations: list[int], channels: int, device: torch.device) -> list[Tensor]:
    """JPEGs' bytes (on the CPU) and their EXIF orientations -> upright uint8 (C, H, W) images on ``device``,
    in one batched call. Raises RuntimeError when any one is refused (callers then try each alone)."""
    images = _decoder()(datas, _mode(channels), device)
    if turns_by_exif(device):
        return images
    return [orient(image, o) for image, o in zip(images, orientations)]


@functools.cache
def turns_by_exif(device: torch.device) -> bool:
    """Whether the chosen decoder already shows images upright on ``device``: a JPEG 16 pixels wide and
    8 high whose EXIF says "rotate 90 degrees" comes back 8 wide when it was turned."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 40, 40)).save(buffer, "JPEG", exif=exif)
    data = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    (image,) = _decoder()([data], "RGB", device)
    return image.shape[-1] == 8


def gpu_decode_refusal(device: torch.device) -> str | None:
    """Why JPEGs cannot be decoded on ``device`` with nvJPEG, or None."""
    if device.type != "cuda":
        return f"JPEGs are decoded on the GPU only when training on one, not on {device}"
    if jpeg_library() == "torchcodec":
        return None  # its wheels carry nvJPEG
    import torchvision.io  # noqa: F401  (registers torchvision's image operators)

    return None if hasattr(torch.ops.image, "decode_jpegs_cuda") else "this torchvision was built without nvJPEG"


def as_bytes_tensor(data: bytes) -> Tensor:
    """A file's bytes as the 1-D uint8 tensor both libraries read."""
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())
