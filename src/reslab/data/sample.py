"""The CIFAR-10 sample shipped in ``samples/`` (JPEG bytes in one ``.npz``), written out as an image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
SAMPLE_PACK = Path(__file__).resolve().parents[3] / "samples" / "cifar10-sample.npz"


def materialize(pack: Path, out: Path, per_class: dict[str, int] | None = None) -> Path:
    """Write ``out/<split>/<class>/<n>.jpg`` from a JPEG pack, at most ``per_class[split]`` images per
    class. Files already there are kept, so it is cheap to call again."""
    z = np.load(pack)
    classes = [str(c) for c in z["classes"]]
    for split in SPLITS:
        if f"{split}_jpeg" not in z:
            continue
        data, offsets, labels = z[f"{split}_jpeg"], z[f"{split}_offsets"], z[f"y_{split}"]
        limit = (per_class or {}).get(split)
        written = dict.fromkeys(range(len(classes)), 0)
        for i, label in enumerate(labels.tolist()):
            if limit is not None and written[label] >= limit:
                continue
            written[label] += 1
            target = out / split / classes[label] / f"{i:05d}.jpg"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data[offsets[i] : offsets[i + 1]].tobytes())
    return out


def write_mosaics(pack: Path, out: Path, per_split: dict[str, int], seed: int = 0) -> Path:
    """A multi-label set from a JPEG pack's images: each picture is a 2x2 grid of 32 px cells with two
    images of one split in two cells chosen at random (the others grey), labelled with both classes
    (one, when both are of the same class). ``per_split``: how many pictures each split gets.
    Writes ``out/<split>/<n>.png`` and ``out/labels.csv`` (path, labels, split)."""
    import csv
    import io

    from PIL import Image

    z = np.load(pack)
    classes = [str(c) for c in z["classes"]]
    rng = np.random.default_rng(seed)
    rows = []
    for split, count in per_split.items():
        data, offsets, labels = z[f"{split}_jpeg"], z[f"{split}_offsets"], z[f"y_{split}"]
        (out / split).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            pair = rng.choice(len(labels), size=2, replace=False)
            cells = rng.choice(4, size=2, replace=False)
            canvas = Image.new("RGB", (64, 64), (128, 128, 128))
            for i, cell in zip(pair.tolist(), cells.tolist()):
                image = Image.open(io.BytesIO(data[offsets[i] : offsets[i + 1]].tobytes())).convert("RGB")
                canvas.paste(image.resize((32, 32)), (32 * (cell % 2), 32 * (cell // 2)))
            name = f"{split}/{n:05d}.png"
            canvas.save(out / name)
            rows.append((name, ";".join(sorted({classes[labels[i]] for i in pair.tolist()})), split))
    with (out / "labels.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels", "split"])
        writer.writerows(rows)
    return out
