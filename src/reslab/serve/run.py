"""Start the server: uvicorn on one process, or ``--workers N`` processes sharing the port."""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn

from ..formats import read_info
from .app import create_app
from .settings import ENV_VAR, ServeConfig


def serve(config: ServeConfig) -> None:
    read_info(Path(config.model))  # a missing or damaged file fails here, with its name, before any port opens
    print(f"reslab serve: http://{config.host}:{config.port}/  (API docs at /docs)", flush=True)
    common = dict(host=config.host, port=config.port, timeout_graceful_shutdown=int(config.timeout_s) + 5,
                  log_level="info", access_log=False)
    if config.workers == 1:
        uvicorn.run(create_app(config), **common)
        return
    os.environ[ENV_VAR] = config.to_env()
    uvicorn.run("reslab.serve.app:app_from_env", factory=True, workers=config.workers, **common)
