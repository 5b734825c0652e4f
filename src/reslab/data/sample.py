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
