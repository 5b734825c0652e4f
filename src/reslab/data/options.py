"""What ``reslab pack`` and ``reslab check-data`` take: flags, YAML and the Python API read these."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option


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
