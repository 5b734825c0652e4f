"""``reslab pack``: a folder dataset as one file of pre-resized JPEGs, and reading it back.

The layout is the JPEG pack reslab already reads for its CIFAR copy (per split ``<split>_jpeg`` bytes
end to end, ``<split>_offsets``, ``y_<split>``, and ``classes``) plus ``<split>_names`` (each image's
path in the folder) and ``pack`` (a JSON record of the source folder and the settings). The archive is
stored uncompressed, so each split's bytes are memory-mapped when training: no per-file opens.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

from ..atomic import atomic_path
from .folders import load_folder
from .images import UnreadableImageError, open_image
from .preprocess import resize_short_side
from .splits import Dataset, FileSplit, PackSplit, holdout_validation

PACK_FORMAT = 1
SPLITS = ("train", "val", "test")


@dataclass
class PackReport:
    out: Path
    counts: dict[str, int]
    skipped: dict[str, str] = field(default_factory=dict)  # file -> reason
    bytes_before: int = 0
    bytes_after: int = 0

    def as_dict(self) -> dict:
        return {"out": str(self.out), "counts": self.counts, "skipped": self.skipped,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after}

    def summary(self) -> str:
        counts = ", ".join(f"{name} {n}" for name, n in self.counts.items())
        lines = [f"packed {counts} images into {self.out}: {self.bytes_before / 1e6:.1f} MB of files -> "
                 f"{self.bytes_after / 1e6:.1f} MB"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable file(s):")
            lines += [f"  {reason}" for reason in self.skipped.values()]
        return "\n".join(lines)


def encode_resized(path: Path, short_side: int, quality: int) -> bytes:
    """An image decoded upright (EXIF applied), its short side brought down to ``short_side`` (never up),
    re-encoded as an RGB or grayscale JPEG. A JPEG that needs none of this keeps its own bytes (once
    checked to decode): re-encoding would only lose quality."""
    img = open_image(path, channels=3, min_size=short_side)  # first: it names what is wrong with a file
    with Image.open(path) as header:
        if (header.format == "JPEG" and header.mode in ("RGB", "L") and min(header.size) <= short_side
                and header.getexif().get(ExifTags.Base.Orientation, 1) == 1):
            return path.read_bytes()
    if img.getbands() == ("R", "G", "B") and _is_gray(img):
        img = img.convert("L")
    if min(img.size) > short_side:
        img = resize_short_side(img, short_side, "bilinear")
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _is_gray(img: Image.Image) -> bool:
    r, g, b = (np.asarray(band) for band in img.split())
    return bool(np.array_equal(r, g) and np.array_equal(g, b))


def _encode_split(split: FileSplit, root: Path, short_side: int, quality: int, threads: int,
                  report: PackReport) -> dict[str, np.ndarray]:
    def encode(path: Path) -> bytes | str:
        try:
            return encode_resized(path, short_side, quality)
        except UnreadableImageError as e:
            return str(e)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(encode, split.paths))
    blobs, labels, names = [], [], []
    for path, label, result in zip(split.paths, split.labels, results):
        report.bytes_before += path.stat().st_size
        if isinstance(result, str):
            report.skipped[str(path)] = result
            continue
        blobs.append(np.frombuffer(result, np.uint8))
        labels.append(label)
        names.append(str(path.relative_to(root)))
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    return {"jpeg": np.concatenate(blobs) if blobs else np.zeros(0, np.uint8), "offsets": offsets,
            "labels": np.asarray(labels, np.int64), "names": np.asarray(names, dtype=str)}


def pack_folder(data: str | Path, out: str | Path, short_side: int = 256, quality: int = 90, seed: int = 0,
                split_file: Path | None = None, threads: int = 4) -> PackReport:
    """Every image of a folder dataset's splits (a given split file honoured), resized and re-encoded
    into ``out`` (an ``.npz``), written atomically: a failure leaves no file behind."""
    root, out = Path(data).resolve(), Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"{out}: a pack is an .npz file (e.g. {out.with_suffix('.npz').name})")
    if not 32 <= short_side <= 4096:
        raise ValueError(f"--short-side {short_side}: expected 32..4096 pixels")
    if not 1 <= quality <= 100:
        raise ValueError(f"--quality {quality}: expected 1..100")
    dataset = load_folder(root, seed=seed, split_file=split_file, hold_out=False)
    # without a val/ folder, load_folder hands the test split as val: pack it once, as test
    val = dataset.val if dataset.val is not dataset.test else None
    splits = {"train": dataset.train, "val": val, "test": dataset.test}
    report = PackReport(out, {})
    arrays: dict[str, np.ndarray] = {"classes": np.asarray(dataset.classes, dtype=str)}
    for name, split in splits.items():
        if split is None:
            continue
        assert isinstance(split, FileSplit)
        encoded = _encode_split(split, root, short_side, quality, threads, report)
        report.counts[name] = len(encoded["labels"])
        arrays.update({f"{name}_jpeg": encoded["jpeg"], f"{name}_offsets": encoded["offsets"],
                       f"y_{name}": encoded["labels"], f"{name}_names": encoded["names"]})
    if report.counts.get("train", 0) == 0:
        raise ValueError(f"{root}: no readable training images to pack")
    record = {"format": PACK_FORMAT, "source": str(root), "short_side": short_side, "quality": quality,
              "seed": seed, "counts": report.counts, "skipped": len(report.skipped)}
    arrays["pack"] = np.asarray(json.dumps(record))
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # uncompressed: JPEG bytes do not compress, and stored members can be mapped
    report.bytes_after = out.stat().st_size
    return report


def is_pack(arrays: np.lib.npyio.NpzFile) -> bool:
    return "pack" in arrays.files


def load_pack(path: Path, arrays: np.lib.npyio.NpzFile, seed: int = 0, hold_out: bool = True) -> Dataset:
    """A pack's splits as ``PackSplit``s: labels, names and offsets in memory, the bytes mapped."""
    record = json.loads(str(arrays["pack"]))
    if record.get("format") != PACK_FORMAT:
        raise ValueError(f"{path}: pack format {record.get('format')} is not {PACK_FORMAT}; pack the folder again")

    def split(name: str) -> PackSplit | None:
        if f"{name}_offsets" not in arrays.files:
            return None
        offsets = arrays[f"{name}_offsets"]
        return PackSplit(path, f"{name}_jpeg", offsets[:-1], offsets[1:], arrays[f"y_{name}"].tolist(),
                         arrays[f"{name}_names"].tolist())

    train, val, test = (split(name) for name in SPLITS)
    assert train is not None
    if val is None:
        train, val = holdout_validation(train, seed) if hold_out else (train, test)
    return Dataset(path.stem, [str(c) for c in arrays["classes"]], train, val, test, packed_from=record)
