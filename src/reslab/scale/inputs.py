"""What ``predict-batch`` classifies: a folder, a list, one image, or a URI that pyarrow's filesystems read."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ..data.images import IMAGE_EXTENSIONS, is_image_file

LIST_SUFFIXES = (".txt", ".parquet")


def is_uri(text: str) -> bool:
    return "://" in text


def _unique(paths: list[str]) -> list[str]:
    """In order, each path once (a list may name a file twice; it is classified once)."""
    return list(dict.fromkeys(paths))


def _read_list(text: str, open_file) -> list[str]:
    """The paths of a .txt (one a line; blank lines and # comments skipped) or a .parquet list ('path' column)."""
    if text.endswith(".parquet"):
        import pyarrow.parquet as pq  # pyarrow: the ray (and ssl) extra

        with open_file() as f:
            table = pq.read_table(f)
        if "path" not in table.column_names:
            raise ValueError(f"{text}: a Parquet list needs a 'path' column, found {', '.join(table.column_names)}")
        return [str(p) for p in table.column("path").to_pylist() if p]
    with open_file() as f:
        lines = f.read().decode("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _list_uri(uri: str) -> list[str]:
    from pyarrow import fs  # pyarrow: the ray extra

    filesystem, root = fs.FileSystem.from_uri(uri)
    scheme = uri.split("://", 1)[0]
    info = filesystem.get_file_info(root)
    if info.type == fs.FileType.NotFound:
        raise ValueError(f"{uri}: not found")
    if info.type == fs.FileType.Directory:
        found = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
        names = sorted(f.path for f in found if f.type == fs.FileType.File
                       and PurePosixPath(f.path).suffix.lower() in IMAGE_EXTENSIONS
                       and not PurePosixPath(f.path).name.startswith("."))
        return [name if scheme == "file" else f"{scheme}://{name}" for name in names]
    if root.endswith(LIST_SUFFIXES):
        return _read_list(root, lambda: filesystem.open_input_file(root))
    return [root if scheme == "file" else uri]


def list_inputs(source: str) -> list[str]:
    """Every image ``source`` names, each once, in a fixed order (a folder's sorted, a list's as listed)."""
    if is_uri(source):
        paths = _list_uri(source)
    else:
        path = Path(source)
        if path.is_dir():
            paths = [str(p) for p in sorted(path.rglob("*")) if p.is_file() and is_image_file(p)]
        elif not path.exists():
            raise ValueError(f"{source}: no such file or folder")
        elif path.suffix.lower() in LIST_SUFFIXES:
            paths = _read_list(source, lambda: path.open("rb"))
        else:
            paths = [str(path)]
    if not paths:
        raise ValueError(f"{source}: no images found (expected a folder of images, a .txt or .parquet list, or "
                         f"an image)")
    return _unique(paths)
