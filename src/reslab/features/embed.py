"""``reslab embed``: one feature vector per image (``extract.pooled``: what the classifier reads), written as a
Parquet table: path, embedding (a fixed-size list of float32), error (for a file that cannot be decoded, whose
embedding is null), and the model's name and version (the digest of its file)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from ..data.images import UnreadableImageError
from ..formats import model_digest
from ..infer.predictor import expand_inputs
from ..models import load_model_file
from ..results import Result
from .extract import pooled

VERSION_LENGTH = 12  # of the model's digest, as `reslab serve` reports its version


@dataclass
class EmbedReport(Result):
    model: Path
    out: Path
    images: int  # embedded
    dimension: int
    seconds: float
    failed: list[dict] = field(default_factory=list)  # file, error

    def text(self) -> str:
        lines = [f"{self.images} images -> {self.out}: {self.dimension}-d embeddings of {self.model} "
                 f"({self.images / max(self.seconds, 1e-9):.0f} images/s)"]
        lines += [f"{row['file']}: skipped: {row['error']}" for row in self.failed]
        return "\n".join(lines)


def embed_files(model_path: Path, inputs: Sequence[str | Path], out: Path, device: torch.device,
                batch_size: int = 64) -> EmbedReport:
    """Embed image files (or folders of them, recursively) into ``out`` (Parquet, written whole or not at all)."""
    import pyarrow as pa  # pyarrow: the ssl extra
    import pyarrow.parquet as pq

    start = time.perf_counter()
    model, info = load_model_file(model_path, device)
    if info.task == "video":
        raise ValueError(f"{model_path}: a video model; embed takes the features of image models")
    model.eval()
    pre = info.preprocess
    paths, vectors, errors = [], [], []
    files = expand_inputs(inputs)
    if not files:
        raise ValueError(f"no image files in {', '.join(map(str, inputs))}")
    for begin in range(0, len(files), batch_size):
        views, kept = [], []
        for path in files[begin : begin + batch_size]:
            try:
                views.append(pre.geometry(pre.open(path)))
                kept.append(path)
            except (UnreadableImageError, OSError) as e:
                paths.append(str(path))
                vectors.append(None)
                errors.append(str(e))
        if not views:
            continue
        x = torch.from_numpy(pre.normalize(np.stack(views))).to(device)
        with torch.inference_mode():
            features = pooled(model, x).cpu().numpy()
        paths += [str(p) for p in kept]
        vectors += list(features)
        errors += [None] * len(kept)
    embedded = [v for v in vectors if v is not None]
    if not embedded:
        raise ValueError("no image could be embedded: " + "; ".join(e for e in errors if e))
    dimension = len(embedded[0])
    version = model_digest(model_path, length=VERSION_LENGTH)
    table = pa.table({
        "path": pa.array(paths, pa.string()),
        "embedding": pa.array([None if v is None else v.astype(np.float32) for v in vectors],
                              pa.list_(pa.float32(), dimension)),
        "error": pa.array(errors, pa.string()),
        "model": pa.array([info.spec.arch] * len(paths), pa.string()),
        "version": pa.array([version] * len(paths), pa.string()),
    })
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    failed = [{"file": p, "error": e} for p, e in zip(paths, errors) if e is not None]
    return EmbedReport(model_path, out, len(embedded), dimension, time.perf_counter() - start, failed)
