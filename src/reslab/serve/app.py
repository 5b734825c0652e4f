"""The FastAPI app of ``reslab serve``.

Requests are decoded in a thread pool (in parallel), their images micro-batched into one inference
call (``batching``), and answered from a bounded cache when the same bytes come again. Several models
may be served side by side (``slots``), each under its name (``?model=NAME``, ``/v2/models/NAME``); the
first is the default. Models load in the background after start-up: ``/healthz`` answers at once,
``/readyz`` once every model has run a warm-up inference, and each model's endpoints once it has.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from urllib.parse import quote

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import UploadFile

from ..data.images import EmptyImageError, ImageTooLargeError, NotAnImageError, UnreadableImageError
from ..evaluate.methods import DEFAULT_METHOD, METHOD_HELP, METHOD_PATTERN, METHODS
from ..infer.predictor import probabilities_of
from ..version import __version__
from .auth import ApiKeys, UnauthorizedError
from .batching import QueueFullError
from .cache import AnswerCache, content_key
from .limits import BodyLimit, UploadTooLargeError, VideoTooLongError
from .metrics import Metrics, RequestMetrics
from .settings import ServeConfig
from .slots import ModelSlot, NotReadyError
from .v2 import HEADER_LENGTH, V2_INFER_BODY, V2Error, infer_response, model_metadata, parse_infer_request

log = logging.getLogger("reslab.serve")


class UnknownModelError(LookupError):
    pass


class BadQueryError(ValueError):
    pass


class CannotExplainError(RuntimeError):
    pass


ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (EmptyImageError, 400), (UnknownModelError, 404), (ImageTooLargeError, 413), (NotAnImageError, 415),
    (UnreadableImageError, 422), (UploadTooLargeError, 413), (QueueFullError, 503), (NotReadyError, 503),
    (TimeoutError, 504), (BadQueryError, 400), (CannotExplainError, 501), (VideoTooLongError, 413),
]


def _error(message: str) -> dict:
    return {"description": message, "content": {"application/json": {"example": {"error": message}}}}


PREDICT_ERRORS = {
    400: _error("empty body, or no file in a multipart upload"),
    404: _error("no model of that name on this server (see GET /models)"),
    413: _error("body larger than --max-upload-mb, an image with more pixels than --max-pixels, or a video longer "
                "than --max-video-s"),
    415: _error("not an image (format not recognised)"),
    422: _error("an image that cannot be decoded (truncated or damaged)"),
    503: _error("model still loading, or the queue is full (--max-queue): retry after Retry-After seconds"),
    504: _error("no answer within --timeout-s"),
}
FILE = {"type": "string", "format": "binary", "minLength": 1}  # an empty body is refused (400)
UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {"file": FILE}}},
    "image/*": {"schema": FILE},
    "video/*": {"schema": FILE},  # a video model's uploads
    "application/octet-stream": {"schema": FILE},
}}}
BATCH_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {  # a bad file: its row
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}}}}}}}}
# OpenAPI links: the served names lead to the v2 routes (a client or a schema-driven tester follows them)
MODELS_LINKS = {"description": "Successful Response", "links": {
    link: {"operationId": operation, "parameters": {"name": "$response.body#/default"},
           "description": f"{what} of the default model; any name of `models` goes in the same place"}
    for link, operation, what in (("ModelMetadata", "v2_model_metadata", "v2 metadata"),
                                  ("ModelReady", "v2_model_ready", "v2 readiness"),
                                  ("ModelInfer", "v2_model_infer", "v2 inference"))}}
UNAUTHORIZED = {401: _error("no API key, or a wrong one: send Authorization: Bearer KEY")}
MODEL_QUERY = Query(None, description="the model to ask, by its name (GET /models); default: the first one served")


class Server:
    """What the endpoints share: one slot per model, the decoding pool, the answer cache, the metrics.
    The first model is the default one, asked when a request names none."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.cache = AnswerCache(config.cache_size)
        cores = config.cores_per_worker()
        self.decode_pool = ThreadPoolExecutor(config.decode_threads or cores, thread_name_prefix="reslab-decode")
        threads = config.threads or cores
        self.slots = [ModelSlot(path, name, config, self.metrics, threads)
                      for path, name in zip(config.models, config.names)]

    async def start(self) -> None:
        await asyncio.gather(*(slot.start() for slot in self.slots))

    async def stop(self) -> None:
        await asyncio.gather(*(slot.stop() for slot in self.slots))
        self.decode_pool.shutdown(wait=False)

    @property
    def ready(self) -> bool:
        return all(slot.ready for slot in self.slots)

    def not_ready_reason(self) -> str:
        return "; ".join(f"{slot.name or slot.path}: {slot.state()}" for slot in self.slots if not slot.ready)

    def slot(self, name: str | None = None) -> ModelSlot:
        """The model called ``name`` (the default one for None); 404 for a name not served here."""
        if name is None:
            return self.slots[0]
        for slot in self.slots:
            if slot.name == name:
                return slot
        raise UnknownModelError(f"unknown model {name!r}; this server serves "
                                f"{', '.join(repr(s.name) for s in self.slots)}")

    # ---- work ----
    async def probabilities(self, slot: ModelSlot, data: bytes, filename: str) -> np.ndarray:
        predictor = slot.require_ready()
        key = (slot.name, content_key(data))
        cached = self.cache.get(key)
        if cached is not None:
            self.metrics.cache_hits.inc()
            return cached
        self.metrics.cache_misses.inc()
        assert slot.batcher is not None
        with slot.batcher.incoming():
            image = await asyncio.get_running_loop().run_in_executor(
                self.decode_pool, lambda: predictor.preprocess([data], [filename])[0])
        self.metrics.queue_depth.labels(slot.name).set(slot.batcher.depth)
        logits = await self.answer_within(slot.batcher.submit(image))
        probs = probabilities_of(logits[None], predictor.info)[0]
        self.cache.put(key, probs)
        return probs

    async def answer_within(self, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.config.timeout_s)
        except asyncio.TimeoutError:  # noqa: UP041 (not the builtin before Python 3.11)
            raise TimeoutError(f"no answer within {self.config.timeout_s:g} s (--timeout-s)") from None


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


def with_served_values(schema: dict[str, Any], names: list[str], classes: list[str]) -> dict[str, Any]:
    """``schema`` with what the loaded models enforce: the v2 routes' ``{name}`` one of the served names, and
    /explain's ``class`` one of their classes."""
    if not names:
        return schema
    schema = copy.deepcopy(schema)  # FastAPI keeps the schema it generated: leave that one as it is
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if path.startswith("/v2/models/{name}") and parameter["name"] == "name":
                    parameter["schema"]["enum"] = names
                elif path == "/explain" and parameter["name"] == "class":
                    parameter["schema"]["anyOf"][0]["enum"] = classes
    return schema


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
              summary="Classify one image, or one video for a video model (multipart `file`, or the raw body)")
    async def predict(request: Request, topk: int = Query(5, ge=1, le=1000),
                      model: str | None = MODEL_QUERY) -> dict[str, Any]:
        slot = server.slot(model)
        slot.require_ready()
        data, filename = await read_upload(request)
        if not data:
            raise EmptyImageError(f"{filename}: empty body")
        if slot.video:  # a whole clip set per request: no micro-batching across requests
            loop = asyncio.get_running_loop()
            answer = await server.answer_within(loop.run_in_executor(None, slot.predict_video, data, filename, topk))
            return {"model": slot.name, "version": slot.version, "file": filename, **answer}
        probs = await server.probabilities(slot, data, filename)
        return {"model": slot.name, "version": slot.version, "file": filename, **slot.answer(probs, topk)}

    @app.post("/predict/batch", responses={**PREDICT_ERRORS, **denied}, openapi_extra=BATCH_BODY, **protected,
              summary="Classify several images (multipart `files`); each gets its answer or its error")
    async def predict_batch(request: Request, topk: int = Query(5, ge=1, le=1000),
                            model: str | None = MODEL_QUERY) -> dict[str, Any]:
        slot = server.slot(model)
        slot.require_ready()
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
                return {"file": name, **slot.answer(await server.probabilities(slot, data, name), topk)}
            except (UnreadableImageError, QueueFullError, TimeoutError) as e:
                status = next(s for t, s in ERROR_STATUS if isinstance(e, t))
                return {"file": name, "error": str(e) or type(e).__name__, "status": status}

        results = await asyncio.gather(*(one(u) for u in uploads))
        return {"model": slot.name, "version": slot.version, "results": list(results)}

    # in the schema where a served model can answer it (a .onnx file cannot give gradients: 501)
    explains = any(slot.explain_refusal is None for slot in server.slots)
    @app.post("/explain", response_class=Response, openapi_extra=UPLOAD_BODY, include_in_schema=explains, **protected,
              summary="Grad-CAM: a PNG of the heat-map over the image as the model sees it (multipart `file`, or "
                      "the raw body); the class (percent-encoded) and its probability in X-Class and X-Probability",
              responses={200: {"content": {"image/png": {}}}, **PREDICT_ERRORS, **denied,
                         400: _error("empty body, or a class the model does not have"),
                         501: _error("the model file cannot give gradients (ONNX, OpenVINO...), or grad-cam is "
                                     "not installed")})
    async def explain(request: Request, model: str | None = MODEL_QUERY,
                      class_name: str | None = Query(None, alias="class", min_length=1,
                                                     description="the class to explain, one of GET /info's "
                                                                 "classes (default: the top one)"),
                      method: str = Query(DEFAULT_METHOD, pattern=METHOD_PATTERN,
                                          description=f"{' | '.join(METHODS)}; {METHOD_HELP}")) -> Response:
        slot = server.slot(model)
        slot.require_ready()
        refusal = slot.explain_refusal
        if refusal:
            raise CannotExplainError(refusal)
        data, filename = await read_upload(request)
        if not data:
            raise EmptyImageError(f"{filename}: empty body")
        if class_name is not None and class_name not in slot.require_ready().classes:
            raise BadQueryError(f"class {class_name!r} is not one of model {slot.name}'s classes (GET /info)")
        loop = asyncio.get_running_loop()
        explanation = await server.answer_within(
            loop.run_in_executor(None, slot.explain, data, filename, class_name, method))
        png = await loop.run_in_executor(server.decode_pool, explanation.png)
        return Response(png, media_type="image/png", headers={
            "X-Class": quote(explanation.class_name), "X-Probability": f"{explanation.probability:.6f}",
            "X-Model": slot.name, "X-Version": slot.version})

    @app.get("/healthz", summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: every model loaded and warmed up", responses={503: _error("not ready")})
    def readyz() -> JSONResponse:
        if server.ready:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "reason": server.not_ready_reason()}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.get("/models", summary="The models served, the default one first", responses={200: MODELS_LINKS, **denied},
             **protected)
    def models() -> dict[str, Any]:
        return {"default": server.slots[0].name, "models": [slot.summary() for slot in server.slots]}

    @app.get("/info", summary="A model's classes, input size, backend and versions (default: the first model)",
             responses={404: PREDICT_ERRORS[404], 503: _error("not ready"), **denied}, **protected)
    def info(model: str | None = MODEL_QUERY) -> dict[str, Any]:
        return {**server.slot(model).info(), "models": [slot.name for slot in server.slots]}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response, responses=denied, **protected)
    def metrics() -> Response:
        for slot in server.slots:
            if slot.batcher:
                server.metrics.queue_depth.labels(slot.name).set(slot.batcher.depth)
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # ---- the open inference protocol (v2) ----
    def ready_slot(name: str) -> ModelSlot:
        try:
            slot = server.slot(name)
        except UnknownModelError as e:
            raise V2Error(404, str(e)) from None
        slot.require_ready()
        return slot

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
             operation_id="v2_model_metadata", **protected)
    @app.get("/v2/models/{name}/versions/{version}", include_in_schema=False, **protected)
    def v2_model(name: str, version: str | None = None) -> dict[str, Any]:
        slot = ready_slot(name)
        predictor = slot.require_ready()
        return model_metadata(slot.name, slot.version, predictor.backend_name, slot.sample_shape(),
                              len(predictor.classes), predictor.info.task, predictor.info.decision_thresholds)

    @app.get("/v2/models/{name}/ready", summary="v2: model readiness", responses={404: _error("unknown"), **denied},
             operation_id="v2_model_ready", **protected)
    def v2_model_ready(name: str) -> dict[str, Any]:
        ready_slot(name)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer", summary="v2: inference on a preprocessed FP32 tensor [N, C, H, W]",
              responses={400: _error("malformed request or tensor (the message gives the expected shape)"),
                         404: _error("unknown model"), 503: _error("not ready or queue full"), **denied},
              operation_id="v2_model_infer", openapi_extra=V2_INFER_BODY, **protected)
    @app.post("/v2/models/{name}/versions/{version}/infer", include_in_schema=False, **protected)
    async def v2_infer(name: str, request: Request, version: str | None = None) -> Response:
        slot = ready_slot(name)
        parsed = parse_infer_request(await request.body(), request.headers.get(HEADER_LENGTH), slot.sample_shape())
        assert slot.batcher is not None
        rows = await server.answer_within(asyncio.gather(*(slot.batcher.submit(x) for x in parsed.tensor)))
        body, headers = infer_response(slot.name, slot.version, parsed, np.stack(rows))
        return Response(body, headers=headers)

    generated = app.openapi
    def openapi() -> dict[str, Any]:
        ready = [slot for slot in server.slots if slot.ready]
        return with_served_values(generated(), [slot.name for slot in ready],
                                  sorted({c for slot in ready for c in slot.require_ready().classes}))

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory for ``--workers N``: each worker process builds its own app."""
    return create_app(ServeConfig.from_env())
