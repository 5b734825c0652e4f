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
