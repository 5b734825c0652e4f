"""Prometheus metrics of one server process (its own registry, so apps in one process do not mix)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("reslab_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                                registry=r)
        self.latency = Histogram("reslab_request_seconds", "HTTP request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("reslab_batch_size", "images per inference call", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("reslab_inference_seconds", "time of one batched inference call", ["model"],
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("reslab_queue_depth", "images waiting for inference", ["model"], registry=r)
        self.cache_hits = Counter("reslab_cache_hits", "answers served from the cache", registry=r)
        self.cache_misses = Counter("reslab_cache_misses", "answers that needed inference", registry=r)
        self.images = Counter("reslab_images", "images classified", ["model"], registry=r)
        self.model = Info("reslab_model", "each model served: version, runtime, precision, device", ["model"],
                          registry=r)

    def batch_observer(self, model: str) -> Callable[[int, float], None]:
        """What a model's micro-batcher reports each inference call to."""
        batch_size, inference, images = (m.labels(model) for m in (self.batch_size, self.inference, self.images))

        def observe(size: int, seconds: float) -> None:
            batch_size.observe(size)
            inference.observe(seconds)
            images.inc(size)

        return observe

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware: each HTTP request counted by route and status, and timed."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")  # the route template, not the raw URL
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
