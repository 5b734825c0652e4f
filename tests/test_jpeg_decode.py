"""JPEG decoding through the library ``data.decode`` chooses (TorchCodec where it loads, else torchvision.io):
every library, on every path, shows an EXIF-turned photo upright exactly once, as Pillow does."""

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from reslab.data import decode
from reslab.data.decoding import EncodedJpeg, decode_on_device

LIBRARIES = ["torchvision"] + (["torchcodec"] if decode.jpeg_library() == "torchcodec" else [])
# two libjpeg builds may round their inverse DCT and chroma upsampling differently by a level or two
JPEG_LEVELS = 3


@pytest.fixture(params=LIBRARIES)
def library(request, monkeypatch):
    monkeypatch.setattr(decode, "jpeg_library", lambda: request.param)
    decode.turns_by_exif.cache_clear()
    yield request.param
    decode.turns_by_exif.cache_clear()


def rotated_jpeg(photo, orientation: int) -> tuple[bytes, np.ndarray]:
    """A photo 48 wide and 32 high saved with ``orientation`` in its EXIF, and Pillow's upright view of it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.open(photo).convert("RGB").resize((48, 32)).save(buffer, "JPEG", quality=95, exif=exif)
    buffer.seek(0)
    return buffer.getvalue(), np.asarray(ImageOps.exif_transpose(Image.open(buffer)).convert("RGB"))


def test_torchcodec_is_chosen_where_it_loads():
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        assert decode.jpeg_library() == "torchvision"
    else:
        assert decode.jpeg_library() == "torchcodec"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_library_turns_a_photo_once_as_pillow_does(library, orientation, photos):
    data, upright = rotated_jpeg(photos["chelsea"], orientation)
    single = decode.decode_jpeg(decode.as_bytes_tensor(data), 3)
    (batched,) = decode.decode_jpegs([decode.as_bytes_tensor(data)], [orientation], 3, torch.device("cpu"))
    for image in (single, batched):
        assert image.shape == (3, *upright.shape[:2])
        assert np.abs(image.numpy().transpose(1, 2, 0).astype(int) - upright).max() <= JPEG_LEVELS


def test_the_gpu_paths_batch_step_turns_once(library, photos):
    """The GPU path's worker reads the orientation and the batch step decodes: run on CPU tensors, its
    images stand as Pillow shows them, whether the library turned them or reslab did."""
    datas = [rotated_jpeg(photos["chelsea"], o) for o in (1, 3, 6, 8)]
    payloads = [EncodedJpeg(decode.as_bytes_tensor(d), o) for (d, _), o in zip(datas, (1, 3, 6, 8))]
    images, reasons = decode_on_device(payloads, 3, torch.device("cpu"))
    assert reasons == [None] * 4
    for image, (_, upright) in zip(images, datas):
        assert np.abs(image.numpy().transpose(1, 2, 0).astype(int) - upright).max() <= JPEG_LEVELS


def test_grayscale_decodes_to_one_channel(library, photos):
    data, upright = rotated_jpeg(photos["chelsea"], 1)
    gray = decode.decode_jpeg(decode.as_bytes_tensor(data), 1)
    assert gray.shape == (1, 32, 48) and gray.dtype == torch.uint8


def test_a_refused_jpeg_raises_runtime_error(library):
    with pytest.raises(RuntimeError):
        decode.decode_jpeg(decode.as_bytes_tensor(b"\xff\xd8\xff\xe0 not really a jpeg"), 3)


def test_decoding_warns_of_no_deprecation(library, photos):
    data, _ = rotated_jpeg(photos["chelsea"], 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decode.decode_jpeg(decode.as_bytes_tensor(data), 3)
        decode.decode_jpegs([decode.as_bytes_tensor(data)], [6], 3, torch.device("cpu"))
    assert [str(w.message) for w in caught] == []
