"""Remembered runtime choices: ``auto`` times every runtime and precision once per model file and machine,
then reuses the answer. The key is the file's content, the machine, the installed runtimes' versions and
what was asked for (device, threads, precision), so a new file, machine, thread count or runtime version
chooses again. Training's ``--amp auto`` keeps its step timings here too (``identity_key``). Nothing here
imports torch: a remembered ONNX Runtime or OpenVINO choice runs without it.

Kept in ``paths.cache_root()/choices.json``; deleting it (or ``RESLAB_CACHE`` elsewhere) forgets them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from importlib import metadata
from pathlib import Path

from ..atomic import write_text_atomic
from ..formats import model_digest
from ..hardware import machine_identity
from ..paths import cache_root

RUNTIMES = ("torch", "onnxruntime", "openvino")


def runtime_version(package: str) -> str | None:
    """An installed package's version, read from its metadata without importing it."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def choice_key(path: Path, backend: str, precision: str, device: str, threads: int | None,
               images: list[Path]) -> str:
    return identity_key([model_digest(path), backend, precision, device, threads, machine_identity(),
                         [runtime_version(r) for r in RUNTIMES], [str(p) for p in images]])


def identity_key(identity: list) -> str:
    """The key of a choice made for everything ``identity`` lists (JSON-serialisable values)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _store() -> Path:
    return cache_root() / "choices.json"


def recall(key: str) -> dict | None:
    try:
        return json.loads(_store().read_text()).get(key)
    except (OSError, ValueError):  # none yet, or damaged: choose again
        return None


def remember(key: str, choice: dict) -> None:
    try:
        known = json.loads(_store().read_text())
    except (OSError, ValueError):
        known = {}
    known[key] = choice
    with contextlib.suppress(OSError):  # a read-only cache only means choosing again next time
        write_text_atomic(_store(), json.dumps(known, indent=1))
