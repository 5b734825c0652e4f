"""API keys for ``reslab serve``: ``Authorization: Bearer KEY`` on everything that reveals or runs the model.

Keys come from ``--api-key`` (repeatable), ``--api-key-file`` (one per line) and ``RESLAB_API_KEY``
(comma-separated). They are compared in constant time against every key, so neither a match's position
nor a prefix shows in the timing, and they are never logged.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

ENV_KEYS = "RESLAB_API_KEY"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class UnauthorizedError(Exception):
    """A protected endpoint called without a valid key: 401 with ``WWW-Authenticate: Bearer``."""


def collect_api_keys(given: list[str] | None = None, key_file: str | Path | None = None) -> list[str]:
    """The keys from the flags, the key file and the environment (blank lines and ``#`` comments skipped)."""
    keys = [k.strip() for k in given or []]
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise ValueError(f"--api-key-file {path}: no such file")
        keys += [line.strip() for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    keys += os.environ.get(ENV_KEYS, "").split(",")
    keys = [k for k in keys if k]
    if any(len(k) < 8 for k in keys):
        raise ValueError("an API key shorter than 8 characters is too easy to guess")
    return keys


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def allows(self, token: str | None) -> bool:
        given = (token or "").encode()
        matched = False
        for key in self._keys:  # every key is compared, whatever matched before
            matched |= hmac.compare_digest(key, given)
        return matched


def exposure_warning(host: str, keys: list[str]) -> str | None:
    """What to tell a user who opens the server to the network without keys."""
    if keys or host in LOCAL_HOSTS:
        return None
    return (f"warning: serving on {host} without an API key: anyone who can reach this machine can use the model. "
            f"Pass --api-key KEY (or --api-key-file, or set {ENV_KEYS}) to require one.")
