"""Start the server: uvicorn on one process, or ``--workers N`` processes sharing the port."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import uvicorn

from ..formats import read_info
from ..infer.selection import candidates, inference_device
from .app import create_app
from .auth import exposure_warning
from .settings import ENV_VAR, ServeConfig


def serve(config: ServeConfig) -> None:
    # a missing or damaged file, an absent device or an impossible precision fails here, before any port opens
    for model in map(Path, config.models):
        info = read_info(model)
        device = inference_device(model, config.backend, config.device)
        candidates(model, info, config.backend, config.precision, device)
    warning = exposure_warning(config.host, config.api_keys)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    keys = f"; API key required ({len(config.api_keys)} accepted)" if config.api_keys else ""
    print(f"reslab serve: {config.scheme}://{config.host}:{config.port}/  (API docs at /docs{keys})", flush=True)
    if len(config.models) > 1:
        for i, (name, model) in enumerate(zip(config.names, config.models)):
            print(f"  {name}: {model}{'  (default)' if i == 0 else ''}  ?model={name}, /v2/models/{name}", flush=True)
    common = dict(host=config.host, port=config.port, timeout_graceful_shutdown=int(config.timeout_s) + 5,
                  log_level="info", access_log=False, ssl_certfile=config.ssl_certfile,
                  ssl_keyfile=config.ssl_keyfile)
    if config.workers == 1:
        uvicorn.run(create_app(config), **common)
        return
    os.environ[ENV_VAR] = config.to_env()
    uvicorn.run("reslab.serve.app:app_from_env", factory=True, workers=config.workers, **common)
