"""Odd and broken image files, written the way cameras, editors and scanners write them."""

from pathlib import Path

import numpy as np
from PIL import Image


def gradient(width: int = 40, height: int = 30) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None, None].repeat(width, 1)
    return Image.fromarray(np.concatenate([x, y, 255 - x], axis=2))


def write_odd_images(folder: Path) -> dict[str, Path]:
    """One file of each odd kind that must decode; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    base = gradient()
    files = {
        "grayscale": (base.convert("L"), "gray.jpg", {}),
        "palette": (base.convert("P", palette=Image.Palette.ADAPTIVE), "palette.png", {"transparency": 0}),
        "rgba": (base.convert("RGBA"), "rgba.png", {}),
        "cmyk": (base.convert("CMYK"), "cmyk.jpg", {}),
        "16bit": (Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257), "deep.png", {}),
    }
    paths = {}
    for name, (img, filename, options) in files.items():
        img.save(folder / filename, **options)
        paths[name] = folder / filename
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    base.save(folder / "rotated.jpg", exif=exif)
    paths["exif_rotated"] = folder / "rotated.jpg"
    return paths


def write_broken_images(folder: Path) -> dict[str, Path]:
    """Files that must be skipped: truncated, empty, not an image at all."""
    folder.mkdir(parents=True, exist_ok=True)
    gradient(64, 64).save(folder / "whole.jpg", quality=95)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    paths = {"truncated": folder / "truncated.jpg", "empty": folder / "empty.png", "text": folder / "notes.jpg"}
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["empty"].write_bytes(b"")
    paths["text"].write_text("not an image, despite the name\n")
    return paths
