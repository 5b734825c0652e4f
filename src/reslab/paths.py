"""Where reslab keeps what it can rebuild: converted pretrained models, remembered runtime choices."""

from __future__ import annotations

import functools
import os
from pathlib import Path


def cache_root() -> Path:
    """``$RESLAB_CACHE``, else ``$XDG_CACHE_HOME/reslab``, else ``~/.cache/reslab``."""
    if os.environ.get("RESLAB_CACHE"):
        return Path(os.environ["RESLAB_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "reslab"


def data_cache(given: str | Path | None) -> Path:
    """Where datasets are downloaded and unpacked: ``given`` (``~`` expanded), else ``cache_root()``."""
    return Path(given).expanduser() if given else cache_root()


def file_digest(*paths: Path, length: int = 16) -> str:
    """The start of a SHA-256 over the files' contents (their identity in caches). Each file's hash is
    remembered per path, size and modification time, so the caches that key on it read a file once."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(_file_sha256(os.path.realpath(path), stat.st_size, stat.st_mtime_ns))
    return digest.hexdigest()[:length]


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> bytes:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.digest()
