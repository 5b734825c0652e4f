"""The served OpenAPI schema says what the server enforces: schemathesis, every check, against a real server."""

import subprocess
import sys
from pathlib import Path

import pytest

from .servers import RunningServer, stopped_cleanly

CONFIG = Path(__file__).with_name("schemathesis.toml")  # what no schema can say (an image's bytes, a tensor's length)


@pytest.mark.slow
def test_schemathesis_finds_nothing(trained_model):
    running = RunningServer(trained_model, "--backend", "onnxruntime", "--max-wait-ms", "1")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
             f"{running.url}/openapi.json", "--checks", "all", "--max-examples", "25", "--seed", "1", "--no-color"],
            capture_output=True, text=True, timeout=600)
    finally:
        log = running.stop()
    assert done.returncode == 0, done.stdout[-4000:]
    assert "passed" in done.stdout and "Tested: 14" in done.stdout  # every route, /explain and v2 included
    assert stopped_cleanly(log), log[-2000:]
