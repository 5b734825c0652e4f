"""Opening images as users' folders really are: rotated, grayscale, palette, RGBA, CMYK, 16-bit, broken."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message names the file and the reason."""


class EmptyImageError(UnreadableImageError):
    """A file or upload of zero bytes."""


class NotAnImageError(UnreadableImageError):
    """Bytes that no image decoder recognises."""


class ImageTooLargeError(UnreadableImageError):
    """More pixels than allowed: refused from the header, before the pixels are decoded."""


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer/float images scaled to 8 bits by their value range."""
    array = np.asarray(img)
    if img.mode.startswith("I;16") or array.dtype == np.uint16:
        scaled = array.astype(np.float32) / 65535.0
    elif img.mode == "F":
        scaled = np.clip(array.astype(np.float32), 0.0, 1.0) if array.max() <= 1.0 else array / max(array.max(), 1)
    else:  # mode "I": 32-bit ints, usually 16-bit data stored wide
        scaled = array.astype(np.float32) / (65535.0 if array.max() > 255 else 255.0)
    return Image.fromarray(np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite transparent images on white, the way viewers show them."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def normalize_mode(img: Image.Image, channels: int = 3) -> Image.Image:
    """Return an 8-bit RGB image (``channels=3``) or grayscale image (``channels=1``)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _to_8bit(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = _flatten_alpha(img)
    target = "RGB" if channels == 3 else "L"
    return img if img.mode == target else img.convert(target)


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) as the image is shown, after its EXIF orientation."""
    turned = img.getexif().get(ExifTags.Base.Orientation) in SWAPPING_ORIENTATIONS
    return (img.height, img.width) if turned else img.size


def open_image(source: str | Path | bytes, channels: int = 3, min_size: int | None = None,
               max_pixels: int | None = None, name: str | None = None,
               reduction: Callable[[int, int], int] | None = None) -> Image.Image:
    """Decode an image fully, apply its EXIF orientation and convert it to 8-bit RGB or L.

    ``min_size`` lets a JPEG decode at a reduced scale (1/2, 1/4, 1/8: libjpeg's DCT scaling) while
    both sides stay at least ``min_size``: much less work when the image is resized down anyway.
    ``reduction`` does the same per image: given the shown (width, height) it returns the DCT reduction
    (1, 2, 4 or 8) to decode a JPEG at.
    ``max_pixels`` refuses larger images (decompression bombs) from their header alone.
    Raises ``UnreadableImageError`` (or a subclass naming the kind) for empty, too large, truncated
    or non-image files; messages start with ``name`` (default: the path, or ``<bytes>``).
    """
    name = name or ("<bytes>" if isinstance(source, bytes) else str(source))
    try:
        if isinstance(source, bytes):
            if not source:
                raise EmptyImageError(f"{name}: empty file")
            img = Image.open(io.BytesIO(source))
        else:
            if Path(source).stat().st_size == 0:
                raise EmptyImageError(f"{name}: empty file")
            img = Image.open(source)
        if max_pixels and img.width * img.height > max_pixels:
            raise ImageTooLargeError(f"{name}: {img.width}x{img.height} is {img.width * img.height:,} pixels, "
                                     f"more than the {max_pixels:,} allowed")
        if min_size and img.format == "JPEG":
            img.draft(img.mode, (min_size, min_size))
        elif reduction is not None:
            factor = reduction(*oriented_size(img))
            if factor > 1 and img.format == "JPEG":
                img.draft(img.mode, (-(-img.width // factor), -(-img.height // factor)))
        img.load()
        img = ImageOps.exif_transpose(img) or img
        return normalize_mode(img, channels)
    except UnreadableImageError:
        raise
    except UnidentifiedImageError:
        raise NotAnImageError(f"{name}: not an image (format not recognised)") from None
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"{name}: {e}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise UnreadableImageError(f"{name}: cannot decode ({e})") from None


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
