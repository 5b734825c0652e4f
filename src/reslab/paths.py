"""Where reslab keeps what it can rebuild: converted pretrained models, remembered runtime choices."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$RESLAB_CACHE``, else ``$XDG_CACHE_HOME/reslab``, else ``~/.cache/reslab``."""
    if os.environ.get("RESLAB_CACHE"):
        return Path(os.environ["RESLAB_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "reslab"


def file_digest(*paths: Path, length: int = 16) -> str:
    """The start of the SHA-256 of the files' contents, one after the other (a file's identity in caches)."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:length]
