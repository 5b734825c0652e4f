"""Choosing a runtime after the answer: a first ``reslab predict`` or ``reslab serve`` of a file whose choice
is not remembered yet answers with a safe default (fp32, the runtime that opens fastest), and a detached
process then times every runtime and precision, checks bf16 against fp32 and remembers the fastest, so
that the next run starts with it. The timing process runs at a low priority, once per choice at a time
(a lock file per key), and forgets nothing if it dies: the next run starts another.

``python -m reslab.infer.background REQUEST.json`` is that process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..paths import cache_root

NICENESS = 10  # below the answering process, which keeps the cores it needs
STALE_LOCK_S = 600.0  # a lock older than this belongs to a process that died: choose again


@dataclass(frozen=True)
class ChoiceRequest:
    """What ``load_backend`` was asked, to be asked again with timing in the background."""

    path: str
    backend: str
    precision: str
    device: str
    threads: int | None
    channels_last: bool
    images: list[str] | None  # None: the shipped sample photos
    key: str  # the choice's key in memory


def lock_path(key: str) -> Path:
    return cache_root() / "choosing" / f"{key}.lock"


def _take_lock(key: str) -> bool:
    """True if no other process is timing this choice (a stale lock is taken over)."""
    lock = lock_path(key)
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        if time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            lock.unlink(missing_ok=True)
    except FileNotFoundError:
        pass
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def choose_in_background(request: ChoiceRequest) -> bool:
    """Start the detached timing process; False if one is already timing this choice or the cache is
    read-only (the choice is then made by a later run)."""
    try:
        if not _take_lock(request.key):
            return False
        order = lock_path(request.key).with_suffix(".json")
        order.write_text(json.dumps(asdict(request)))
        log = order.with_suffix(".log").open("w")  # kept only if the timing fails: what went wrong
    except OSError:
        return False
    with log:
        subprocess.Popen([sys.executable, "-m", "reslab.infer.background", str(order)], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, start_new_session=True, close_fds=True)
    return True


def choosing(key: str) -> bool:
    """Whether a timing process holds the lock of ``key``."""
    return lock_path(key).exists()


def _choose(order: Path) -> None:
    from .selection import load_backend  # cycle: selection imports this module

    request = ChoiceRequest(**json.loads(order.read_text()))
    try:
        os.nice(NICENESS)
        load_backend(request.path, request.backend, request.device, request.threads, request.channels_last,
                     request.precision, [Path(p) for p in request.images] if request.images is not None else None,
                     timing="now")
        order.with_suffix(".log").unlink(missing_ok=True)
    finally:
        order.unlink(missing_ok=True)
        lock_path(request.key).unlink(missing_ok=True)


if __name__ == "__main__":
    _choose(Path(sys.argv[1]))
