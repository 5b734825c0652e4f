"""The FastAPI app of ``reslab serve``.

Requests are decoded in a thread pool (in parallel), their images micro-batched into one inference
call (``batching``), and answered from a bounded cache when the same bytes come again. The model
loads in the background after start-up: ``/healthz`` answers at once, ``/readyz`` and the
prediction endpoints only once a warm-up inference has run.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import UploadFile

from ..data.images import EmptyImageError, ImageTooLargeError, NotAnImageError, UnreadableImageError
from ..formats import model_digest
from ..infer.predictor import Predictor, softmax
from ..version import __version__
from .auth import ApiKeys, UnauthorizedError
from .batching import MicroBatcher, QueueFullError
from .cache import AnswerCache, content_key
from .limits import BodyLimit, UploadTooLargeError
from .metrics import Metrics, RequestMetrics
from .settings import ServeConfig
from .v2 import HEADER_LENGTH, V2Error, infer_response, model_metadata, parse_infer_request

log = logging.getLogger("reslab.serve")


class NotReadyError(RuntimeError):
    pass


ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (EmptyImageError, 400), (ImageTooLargeError, 413), (NotAnImageError, 415), (UnreadableImageError, 422),
    (UploadTooLargeError, 413), (QueueFullError, 503), (NotReadyError, 503), (TimeoutError, 504),
]


def _error(message: str) -> dict:
    return {"description": message, "content": {"application/json": {"example": {"error": message}}}}


PREDICT_ERRORS = {
    400: _error("empty body, or no file in a multipart upload"),
    413: _error("body larger than --max-upload-mb, or an image with more pixels than --max-pixels"),
    415: _error("not an image (format not recognised)"),
    422: _error("an image that cannot be decoded (truncated or damaged)"),
    503: _error("model still loading, or the queue is full (--max-queue): retry after Retry-After seconds"),
    504: _error("no answer within --timeout-s"),
}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}}}
BATCH_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}}}}}}}}
UNAUTHORIZED = {401: _error("no API key, or a wrong one: send Authorization: Bearer KEY")}


def file_version(path: Path) -> str:
    """The model's version in answers: the start of its files' SHA-256 (changes when they do)."""
    return model_digest(path, length=12)


class Server:
    """What the endpoints share: the predictor, the batcher, the cache, the metrics."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.cache = AnswerCache(config.cache_size)
        cores = config.cores_per_worker()
        self.decode_pool = ThreadPoolExecutor(config.decode_threads or cores, thread_name_prefix="reslab-decode")
        self.predictor: Predictor | None = None
        self.batcher: MicroBatcher | None = None
        self.name = config.name or ""
        self.version = ""
        self.load_error: str | None = None

    # ---- life cycle ----
    def _load(self) -> Predictor:
        c = self.config
        predictor = Predictor.from_file(c.model, backend=c.backend, device=c.device, precision=c.precision,
                                        threads=c.threads or c.cores_per_worker(), decode_threads=1,
                                        max_pixels=c.max_pixels)
        self.version = file_version(Path(c.model))
        self.name = c.name or predictor.info.spec.arch
        return predictor

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            predictor = await loop.run_in_executor(None, self._load)
            batcher = MicroBatcher(predictor.backend.run, self.config.max_batch, self.config.max_wait_ms / 1000,
                                   self.config.max_queue, self.metrics.observe_batch)
            batcher.start()
            pre = predictor.info.preprocess
            await batcher.submit(np.zeros((pre.in_chans, pre.image_size, pre.image_size), np.float32))  # warm-up
            self.predictor, self.batcher = predictor, batcher
            self.metrics.model.info({"model": self.name, "version": self.version, "backend": predictor.backend_name,
                                     "precision": predictor.precision, "device": str(predictor.device)})
            log.info("model %s ready: %s %s (%s)", self.config.model, predictor.backend_name, predictor.precision,
                     predictor.choice)
        except Exception as e:  # shown by /readyz; the process stays up so the reason can be read
            self.load_error = f"{type(e).__name__}: {e}"
            log.error("model %s failed to load: %s", self.config.model, self.load_error)

    async def stop(self) -> None:
        if self.batcher:
            await self.batcher.stop()
        self.decode_pool.shutdown(wait=False)

    @property
    def ready(self) -> bool:
        return self.predictor is not None

    def require_ready(self) -> Predictor:
        if self.predictor is None:
            raise NotReadyError(f"model failed to load: {self.load_error}" if self.load_error else
                                "the model is still loading")
        return self.predictor

    # ---- work ----
    def _preprocess(self, data: bytes, filename: str) -> np.ndarray:
        return self.require_ready().preprocess([data], [filename])[0]

    async def probabilities(self, data: bytes, filename: str) -> np.ndarray:
        self.require_ready()
        key = content_key(data)
        cached = self.cache.get(key)
        if cached is not None:
            self.metrics.cache_hits.inc()
            return cached
        self.metrics.cache_misses.inc()
        assert self.batcher is not None
        with self.batcher.incoming():
            image = await asyncio.get_running_loop().run_in_executor(self.decode_pool, self._preprocess, data,
                                                                     filename)
        self.metrics.queue_depth.set(self.batcher.depth)
        logits = await self.answer_within(self.batcher.submit(image))
        probs = softmax(logits[None].astype(np.float64))[0].astype(np.float32)
        self.cache.put(key, probs)
        return probs

    async def answer_within(self, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.config.timeout_s)
        except asyncio.TimeoutError:  # noqa: UP041 (not the builtin before Python 3.11)
            raise TimeoutError(f"no answer within {self.config.timeout_s:g} s (--timeout-s)") from None

    def top(self, probs: np.ndarray, topk: int) -> list[dict[str, Any]]:
        predictor = self.require_ready()
        order = np.argsort(-probs, kind="stable")[:topk]
        return [{"index": int(i), "label": predictor.classes[int(i)], "probability": float(probs[i])} for i in order]

    def info(self) -> dict[str, Any]:
        predictor = self.require_ready()
        pre = predictor.info.preprocess
        return {
            "model": self.name, "version": self.version, "file": str(self.config.model),
            "architecture": predictor.info.spec.arch, "classes": predictor.classes,
            "num_classes": len(predictor.classes),
            "input": {"shape": [pre.in_chans, pre.image_size, pre.image_size], "resize_size": pre.resize_size,
                      "mean": list(pre.mean), "std": list(pre.std), "interpolation": pre.interpolation},
            "backend": predictor.backend_name, "precision": predictor.precision,
            "precision_choice": predictor.choice, "device": str(predictor.device), "reslab": __version__,
            "batching": {"max_batch": self.config.max_batch, "max_wait_ms": self.config.max_wait_ms},
            "limits": {"max_upload_mb": self.config.max_upload_mb, "max_pixels": self.config.max_pixels},
        }

    def chw(self) -> tuple[int, int, int]:
        pre = self.require_ready().info.preprocess
        return pre.in_chans, pre.image_size, pre.image_size


async def read_upload(request: Request) -> tuple[bytes, str]:
    """One image: the ``file`` part of a multipart form, or the raw body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise EmptyImageError("no 'file' part in the multipart upload")
        return await upload.read(), upload.filename or "upload"
    data = await request.body()
    return data, "body"


def create_app(config: ServeConfig) -> FastAPI:
    server = Server(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.create_task(server.start())
        yield
        await loading
        await server.stop()

    app = FastAPI(title="reslab", version=__version__, lifespan=lifespan,
                  description="Image classification with a reslab model: REST, the v2 inference protocol, a web page.")
    app.state.server = server
    keys = ApiKeys(config.api_keys)
    bearer = HTTPBearer(auto_error=False, description="an API key the server was started with (--api-key)")

    def require_key(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not keys.allows(credentials.credentials if credentials else None):
            raise UnauthorizedError("an API key is required: send Authorization: Bearer KEY" if credentials is None
                                    else "wrong API key")

    # with keys, what reveals or runs the model needs one; health and readiness stay open for load balancers
    protected = {"dependencies": [Depends(require_key)]} if keys else {}
    denied = UNAUTHORIZED if keys else {}
    page = resources.files("reslab.serve").joinpath("static/index.html").read_text()

    for exc_type, status in ERROR_STATUS:
        def handler(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            headers = {"Retry-After": "1"} if status == 503 else None
            message = str(exc) or type(exc).__name__
            return JSONResponse({"error": message}, status_code=status, headers=headers)

        app.add_exception_handler(exc_type, handler)

    @app.exception_handler(UnauthorizedError)
    def unauthorized(request: Request, exc: UnauthorizedError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="reslab"'})

    @app.exception_handler(V2Error)
    def v2_error(request: Request, exc: V2Error) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    app.add_middleware(BodyLimit, max_bytes=config.max_upload_bytes)
    app.add_middleware(RequestMetrics, metrics=server.metrics)  # outermost: it counts the 413s above too

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.post("/predict", responses={**PREDICT_ERRORS, **denied}, openapi_extra=UPLOAD_BODY, **protected,
              summary="Classify one image (multipart `file`, or the raw body)")
    async def predict(request: Request, topk: int = Query(5, ge=1, le=1000)) -> dict[str, Any]:
        server.require_ready()
        data, filename = await read_upload(request)
        if not data:
            raise EmptyImageError(f"{filename}: empty body")
        probs = await server.probabilities(data, filename)
        return {"model": server.name, "version": server.version, "file": filename,
                "predictions": server.top(probs, topk)}

    @app.post("/predict/batch", responses={**PREDICT_ERRORS, **denied}, openapi_extra=BATCH_BODY, **protected,
              summary="Classify several images (multipart `files`); each gets its answer or its error")
    async def predict_batch(request: Request, topk: int = Query(5, ge=1, le=1000)) -> dict[str, Any]:
        server.require_ready()
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise EmptyImageError("send the images as multipart/form-data parts named 'files'")
        form = await request.form(max_files=256)
        uploads = [u for key in ("files", "file") for u in form.getlist(key) if isinstance(u, UploadFile)]
        if not uploads:
            raise EmptyImageError("no 'files' parts in the multipart upload")

        async def one(upload: UploadFile) -> dict[str, Any]:
            name = upload.filename or "upload"
            try:
                data = await upload.read()
                if not data:
                    raise EmptyImageError(f"{name}: empty file")
                return {"file": name, "predictions": server.top(await server.probabilities(data, name), topk)}
            except (UnreadableImageError, QueueFullError, TimeoutError) as e:
                status = next(s for t, s in ERROR_STATUS if isinstance(e, t))
                return {"file": name, "error": str(e) or type(e).__name__, "status": status}

        results = await asyncio.gather(*(one(u) for u in uploads))
        return {"model": server.name, "version": server.version, "results": list(results)}

    @app.get("/healthz", summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: model loaded and warmed up", responses={503: _error("not ready")})
    def readyz() -> JSONResponse:
        if server.ready:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "reason": server.load_error or "loading"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.get("/info", summary="Model, classes, input size, backend, versions",
             responses={503: _error("not ready"), **denied}, **protected)
    def info() -> dict[str, Any]:
        return server.info()

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response, responses=denied, **protected)
    def metrics() -> Response:
        if server.batcher:
            server.metrics.queue_depth.set(server.batcher.depth)
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # ---- the open inference protocol (v2) ----
    def model_or_404(name: str) -> None:
        server.require_ready()
        if name != server.name:
            raise V2Error(404, f"unknown model {name!r}; this server serves {server.name!r}")

    @app.get("/v2", summary="v2: server metadata")
    def v2_server() -> dict[str, Any]:
        return {"name": "reslab", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live", summary="v2: liveness")
    def v2_live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", summary="v2: readiness", responses={503: _error("not ready")})
    def v2_ready() -> JSONResponse:
        return JSONResponse({"ready": server.ready}, status_code=200 if server.ready else 503)

    @app.get("/v2/models/{name}", summary="v2: model metadata", responses={404: _error("unknown model"), **denied},
             **protected)
    @app.get("/v2/models/{name}/versions/{version}", include_in_schema=False, **protected)
    def v2_model(name: str, version: str | None = None) -> dict[str, Any]:
        model_or_404(name)
        assert server.predictor is not None
        return model_metadata(server.name, server.version, server.predictor.backend_name, server.chw(),
                              len(server.predictor.classes))

    @app.get("/v2/models/{name}/ready", summary="v2: model readiness", responses={404: _error("unknown"), **denied},
             **protected)
    def v2_model_ready(name: str) -> dict[str, Any]:
        model_or_404(name)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer", summary="v2: inference on a preprocessed FP32 tensor [N, C, H, W]",
              responses={400: _error("malformed request or tensor (the message gives the expected shape)"),
                         404: _error("unknown model"), 503: _error("not ready or queue full"), **denied},
              **protected)
    @app.post("/v2/models/{name}/versions/{version}/infer", include_in_schema=False, **protected)
    async def v2_infer(name: str, request: Request, version: str | None = None) -> Response:
        model_or_404(name)
        parsed = parse_infer_request(await request.body(), request.headers.get(HEADER_LENGTH), server.chw())
        assert server.batcher is not None
        rows = await server.answer_within(asyncio.gather(*(server.batcher.submit(x) for x in parsed.tensor)))
        body, headers = infer_response(server.name, server.version, parsed, np.stack(rows))
        return Response(body, headers=headers)

    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory for ``--workers N``: each worker process builds its own app."""
    return create_app(ServeConfig.from_env())
