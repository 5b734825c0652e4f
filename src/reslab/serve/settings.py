"""The typed configuration of ``reslab serve``: command-line flags -> ``ServeConfig`` -> the app."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

ENV_VAR = "RESLAB_SERVE_CONFIG"  # how the config reaches uvicorn's worker processes


@dataclass
class ServeConfig:
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "auto"  # auto | torch | onnxruntime | openvino
    workers: int = 1
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_upload_mb: float = 20.0
    max_pixels: int = 50_000_000
    cache_size: int = 1024  # answers kept by the hash of the uploaded bytes; 0 = off
    max_queue: int = 256  # images waiting for inference; beyond it requests get 503
    timeout_s: float = 30.0
    threads: int | None = None  # inference threads per worker (default: the cores, shared among workers)
    decode_threads: int | None = None  # decoding threads per worker
    name: str | None = None  # the model's name in the API (default: its architecture)
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 | int8
    api_keys: list[str] = dataclasses.field(default_factory=list, repr=False)  # empty: no key needed
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        for field in ("port", "workers", "max_batch", "max_queue"):
            if getattr(self, field) < 1:
                raise ValueError(f"serve option {field!r} must be at least 1, got {getattr(self, field)}")
        for field in ("max_wait_ms", "cache_size"):
            if getattr(self, field) < 0:
                raise ValueError(f"serve option {field!r} must not be negative, got {getattr(self, field)}")
        for field in ("max_upload_mb", "timeout_s", "max_pixels"):
            if getattr(self, field) <= 0:
                raise ValueError(f"serve option {field!r} must be positive, got {getattr(self, field)}")

        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("TLS needs both --ssl-certfile and --ssl-keyfile")
        for name in ("ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise ValueError(f"--{name.replace('_', '-')} {value}: no such file")

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_certfile else "http"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def cores_per_worker(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.workers)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeConfig:
        if ENV_VAR not in os.environ:
            raise RuntimeError(f"{ENV_VAR} is not set: start the server with `reslab serve MODEL`")
        return cls(**json.loads(os.environ[ENV_VAR]))
