"""Real `reslab serve` processes on 127.0.0.1, started by the tests on free ports."""

import os
import socket
import ssl
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningServer:
    """``verify``: the CA file for an HTTPS server (``--ssl-certfile``); ``env``: extra environment."""

    def __init__(self, model, *flags: str, verify: str | None = None, env: dict[str, str] | None = None) -> None:
        """``model``: one model argument, or a list of them (several models in one server)."""
        models = [str(m) for m in model] if isinstance(model, list) else [str(model)]
        self.port = free_port()
        self.url = f"{'https' if verify else 'http'}://127.0.0.1:{self.port}"
        tls = ssl.create_default_context(cafile=verify) if verify else True
        self.client = httpx.Client(base_url=self.url, verify=tls, timeout=30)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reslab", "serve", *models, "--port", str(self.port), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
        self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stdout.read()}")
            try:
                if self.client.get("/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server on {self.url} not ready after {timeout} s")

    def stop(self) -> str:
        """SIGTERM, then the server's log; uvicorn re-raises the signal after a graceful shutdown."""
        self.client.close()  # a kept-alive connection would hold the graceful shutdown open
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return self.process.stdout.read()


def stopped_cleanly(log: str) -> bool:
    return "Application shutdown complete" in log and "Traceback" not in log
