"""The output of ``predict-batch``: a folder of Parquet part files, each written whole or not at all.

A run appends parts as results arrive; a run cut short leaves only whole parts. Run again with the same folder
and the paths already in it are skipped, so that every input ends up in exactly one row.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from ..atomic import atomic_path

PART_GLOB = "part-*.parquet"


def schema(dimension: int | None):
    """path, the top-k labels and their probabilities, a multi-label model's predicted labels (null otherwise),
    the embedding where asked for, the error of an image that could not be classified, the model and version."""
    import pyarrow as pa  # pyarrow: the ray extra

    fields = [("path", pa.string()), ("labels", pa.list_(pa.string())), ("probabilities", pa.list_(pa.float32())),
              ("predicted", pa.list_(pa.string()))]
    if dimension is not None:
        fields.append(("embedding", pa.list_(pa.float32(), dimension)))
    fields += [("error", pa.string()), ("model", pa.string()), ("version", pa.string())]
    return pa.schema(fields)


def output_folder(out: str | Path) -> Path:
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder (predict-batch writes a folder of Parquet parts)")
    return folder


def done_paths(folder: Path) -> set[str]:
    """The paths the whole parts in ``folder`` hold."""
    import pyarrow.parquet as pq  # pyarrow: the ray extra

    done: set[str] = set()
    for part in sorted(folder.glob(PART_GLOB)):
        done.update(pq.read_table(part, columns=["path"]).column("path").to_pylist())
    return done


def write_part(folder: Path, table) -> Path:
    """One part file of ``table`` (pyarrow), written under a temporary name and renamed when whole."""
    import pyarrow.parquet as pq  # pyarrow: the ray extra

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{uuid.uuid4().hex}.parquet"
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def remove_strays(folder: Path) -> None:
    """Parts a killed run was writing: never renamed, never read."""
    for stray in folder.glob(".part-*.tmp-*"):
        stray.unlink()
