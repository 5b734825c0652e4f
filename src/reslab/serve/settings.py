"""The typed configuration of ``reslab serve``: command-line flags -> ``ServeConfig`` -> the app."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..infer.options import BACKENDS
from ..names import is_model_name, output_stem
from ..options import MODEL_HELP, PRECISION_HELP, check_choices, device_option, option, weights_option
from ..precision import CHOICES

ENV_VAR = "RESLAB_SERVE_CONFIG"  # how the config reaches uvicorn's worker processes


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a model name that is a URL path segment as it is


def split_model_arguments(arguments: list[str], name: str | None = None) -> list[tuple[str | None, str]]:
    """``MODEL`` or ``NAME=MODEL`` each, as (name, model). One model keeps ``name`` (``--name``); several are
    named by their file's stem (``a.onnx``: ``a``) or model name (``resnet50``) unless named."""
    pairs = []
    for argument in arguments:
        label, sep, source = argument.partition("=")
        named = bool(sep) and NAME.fullmatch(label) is not None and not Path(argument).exists()
        pairs.append((label, source) if named else (None, argument))
    if len(pairs) == 1:
        if name is not None and pairs[0][0] is not None:
            raise ValueError("name the model either with --name or with NAME=MODEL, not both")
        return [(name or pairs[0][0], pairs[0][1])]
    if name is not None:
        raise ValueError("--name names a single model; with several, name each as NAME=MODEL")
    return [(label or stem(source), source) for label, source in pairs]


def stem(source: str) -> str:
    """A model's default name among several: its file's stem, or its model name made file-like."""
    return output_stem(source) if is_model_name(source) else Path(source.rstrip("/")).stem


@dataclass
class ServeConfig:
    models: list[str] = option(positional=True, help="model files; the first is the default")
    host: str = option("127.0.0.1", help="the address to listen on")
    port: int = option(8000, help="the port to listen on")
    backend: str = option("auto", choices=("auto", *BACKENDS), help="auto: the fastest installed runtime that can "
                          "read each model")
    workers: int = option(1, help="server processes (each loads the model)")
    max_batch: int = option(32, help="images per inference call at most")
    max_wait_ms: float = option(5.0, help="how long a batch waits to fill")
    max_upload_mb: float = option(20.0, help="larger bodies get 413 before being read")
    max_pixels: int = option(50_000_000, help="larger images get 413 before decoding")
    max_video_s: float = option(300.0, help="video models: longer uploads get 413 before their clips are decoded")
    cache_size: int = option(1024, help="answers cached by the hash of the uploaded bytes (0 = off)")
    max_queue: int = option(256, help="images waiting for inference beyond this get 503 + Retry-After")
    timeout_s: float = option(30.0, help="a request without an answer by then gets 504")
    threads: int | None = option(None, help="inference threads per worker (default: cores / workers)")
    decode_threads: int | None = option(None, help="decoding threads per worker (default: cores / workers)")
    # each model's name in the API; None (one model, unnamed): its architecture, once the file is read
    names: list[str | None] = option(factory=list, help="each model's name in answers and v2 URLs")
    device: str = device_option()
    precision: str = option("auto", choices=CHOICES, help=PRECISION_HELP)
    api_keys: list[str] = dataclasses.field(default_factory=list, repr=False,  # empty: no key needed
                                            metadata={"help": "accepted API keys"})
    ssl_certfile: str | None = option(None, metavar="PEM", help="serve HTTPS with this certificate (and "
                                      "--ssl-keyfile)")
    ssl_keyfile: str | None = option(None, metavar="PEM", help="the certificate's private key")

    def __post_init__(self) -> None:
        check_choices(self, "serve option")
        if not self.models:
            raise ValueError("serve needs at least one model")
        self.names = list(self.names) or [None] * len(self.models)
        if len(self.names) != len(self.models):
            raise ValueError(f"{len(self.names)} names for {len(self.models)} models")
        given = [n for n in self.names if n is not None]
        for name in given:
            if not NAME.fullmatch(name):
                raise ValueError(f"model name {name!r}: use letters, digits, '_', '.' and '-' (it goes into URLs)")
        if len(self.models) > 1 and len(given) < len(self.models):
            raise ValueError("several models each need a name")
        repeated = sorted({n for n in given if given.count(n) > 1})
        if repeated:
            raise ValueError(f"model name {repeated[0]!r} is given to several models: name them NAME=MODEL")
        for field in ("port", "workers", "max_batch", "max_queue"):
            if getattr(self, field) < 1:
                raise ValueError(f"serve option {field!r} must be at least 1, got {getattr(self, field)}")
        for field in ("max_wait_ms", "cache_size"):
            if getattr(self, field) < 0:
                raise ValueError(f"serve option {field!r} must not be negative, got {getattr(self, field)}")
        for field in ("max_upload_mb", "timeout_s", "max_pixels", "max_video_s"):
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


@dataclass(kw_only=True)
class ServeCommand:
    """What ``reslab serve`` takes beside ``ServeConfig``'s settings: the models as named on the command line
    and where the API keys come from."""

    models: list[str] = option(positional=True, nargs="+", metavar="MODEL", help=MODEL_HELP + ". Several are served "
                               "side by side, each under its name (its file's stem, or NAME=MODEL); the first is the "
                               "default")
    weights: str | None = weights_option()
    name: str | None = option(None, help="a single model's name in answers and v2 URLs (default: its architecture)")
    api_key: list[str] | None = option(None, nargs="append", metavar="KEY", help="require Authorization: Bearer "
                                       "KEY for predictions, model metadata, /info and /metrics (repeatable; also "
                                       "RESLAB_API_KEY=K1,K2)")
    api_key_file: str | None = option(None, metavar="FILE", help="accepted API keys, one per line")
