"""Hugging Face datasets as reslab datasets: ``hf:NAME[:CONFIG]`` through the ``datasets`` library (online, or
its cache offline), or a local folder written by ``save_to_disk`` or holding parquet files.

The image and label columns are found by their feature types (``Image``, ``ClassLabel``) or given. Each
split's encoded image bytes are written once into a cache folder keyed by the split's fingerprint, so
training, evaluation and prediction then read ordinary files with reslab's own decoding.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

from PIL import Image

from .splits import VAL_NAMES, Dataset, FileSplit, holdout_validation

PREFIX = "hf:"


def _open(source: str):
    """A ``datasets.DatasetDict`` for ``source`` (the text after ``hf:``)."""
    try:
        import datasets
    except ImportError:
        raise ValueError("--data hf:... needs the datasets library: pip install 'reslab[hf]'") from None
    path = Path(source)
    saved = path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())
    if path.is_dir() and not saved and not any(path.rglob("*.parquet")):
        raise ValueError(f"{path}: neither a save_to_disk folder (dataset_dict.json / state.json) nor a folder of "
                         f"parquet files")
    try:
        if saved:
            loaded = datasets.load_from_disk(str(path))
        elif path.is_dir():
            loaded = datasets.load_dataset(str(path))
        else:
            name, _, config = source.partition(":")
            loaded = datasets.load_dataset(name, config or None)
    except Exception as e:  # offline, unknown name, gated: the datasets library raises many kinds
        detail = " ".join(str(e).split())
        raise ValueError(f"hf:{source}: could not load it with the datasets library ({type(e).__name__}: {detail}). "
                         f"Offline? Save it with `dataset.save_to_disk(DIR)` on a machine that is online and pass "
                         f"--data hf:DIR") from e
    return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})


def find_columns(features, image_column: str | None, label_column: str | None) -> tuple[str, str]:
    """The image and label columns: as given, else the first ``Image`` and ``ClassLabel`` features."""
    import datasets

    def pick(given: str | None, kind: type, what: str, flag: str) -> str:
        if given is not None:
            if given not in features:
                raise ValueError(f"{flag} {given!r}: no such column; the dataset has {', '.join(features)}")
            return given
        found = [name for name, feature in features.items() if isinstance(feature, kind)]
        if not found:
            raise ValueError(f"no {what} column found among {', '.join(features)}: name it with {flag}")
        return found[0]

    return (pick(image_column, datasets.Image, "image", "--image-column"),
            pick(label_column, datasets.ClassLabel, "ClassLabel", "--label-column"))


def _class_names(dataset_dict, label_column: str) -> list[str]:
    import datasets

    feature = next(iter(dataset_dict.values())).features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    values = {v for split in dataset_dict.values() for v in split[label_column]}
    return sorted(str(v) for v in values) if any(isinstance(v, str) for v in values) else \
        [str(i) for i in range(int(max(values)) + 1)]


def _write_split(split, image_column: str, label_column: str, classes: list[str], folder: Path) -> FileSplit:
    """The split's encoded images as files (written once, atomically), labelled by index."""
    import datasets

    index = {name: i for i, name in enumerate(classes)}
    labels = [index[str(v)] if isinstance(v, str) else int(v) for v in split[label_column]]
    done = folder / "files.json"
    if not done.is_file():
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        names = []
        for i, image in enumerate(split.cast_column(image_column, datasets.Image(decode=False))[image_column]):
            data = image["bytes"] if image.get("bytes") is not None else Path(image["path"]).read_bytes()
            try:
                suffix = "." + (Image.open(io.BytesIO(data)).format or "img").lower()
            except Exception:  # undecodable: kept under a neutral name, and skipped (named) when read
                suffix = ".img"
            names.append(f"{i:07d}{suffix}")
            (tmp / names[-1]).write_bytes(data)
        (tmp / "files.json").write_text(json.dumps(names))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    names = json.loads(done.read_text())
    return FileSplit([folder / n for n in names], labels)


def load_hf(data: str, cache_dir: Path, seed: int = 0, hold_out: bool = True, image_column: str | None = None,
            label_column: str | None = None) -> Dataset:
    """``data``: ``hf:NAME[:CONFIG]`` or ``hf:FOLDER``; its train, validation (or valid/val) and test splits."""
    source = data.removeprefix(PREFIX)
    dataset_dict = _open(source)
    if "train" not in dataset_dict:
        raise ValueError(f"{data}: no 'train' split (it has {', '.join(dataset_dict)})")
    image_column, label_column = find_columns(dataset_dict["train"].features, image_column, label_column)
    classes = _class_names(dataset_dict, label_column)
    root = cache_dir / "hf" / source.strip("/").replace("/", "--").replace(":", "--")

    def split(name: str) -> FileSplit:
        part = dataset_dict[name]
        return _write_split(part, image_column, label_column, classes, root / f"{name}-{part._fingerprint}")

    train = split("train")
    val_name = next((n for n in ("validation", *VAL_NAMES) if n in dataset_dict), None)
    test = split("test") if "test" in dataset_dict else None
    if val_name is not None:
        val = split(val_name)
    else:
        train, val = holdout_validation(train, seed) if hold_out else (train, test)
    return Dataset(Path(source).name or source, classes, train, val, test)
