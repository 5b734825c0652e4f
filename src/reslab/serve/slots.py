"""One served model: its predictor, its micro-batcher, its version and whether it has loaded.

A server holds one ``ModelSlot`` per model it serves (``reslab serve a.onnx b.safetensors resnet50``);
each loads in the background, batches its own requests and answers under its own name.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..formats import forward_only_reason, model_digest
from ..infer.background import choosing, lock_path
from ..infer.memory import recall
from ..infer.predictor import Predictor, answer, ranked
from ..version import __version__
from .batching import MicroBatcher
from .metrics import Metrics
from .settings import ServeConfig

log = logging.getLogger("reslab.serve")
CHOICE_POLL_S = 1.0  # how often a first start looks whether the background timing has chosen


class NotReadyError(RuntimeError):
    pass


def file_version(path: Path) -> str:
    """The model's version in answers: the start of its files' SHA-256 (changes when they do)."""
    return model_digest(path, length=12)


class ModelSlot:
    def __init__(self, path: str, name: str | None, config: ServeConfig, metrics: Metrics, threads: int) -> None:
        self.path = path
        self.name = name or ""  # None: the architecture, once the model file is read
        self.config = config
        self.metrics = metrics
        self.threads = threads
        self.predictor: Predictor | None = None
        self.batcher: MicroBatcher | None = None
        self.version = ""
        self.load_error: str | None = None
        self._explaining = threading.Lock()  # one heat-map at a time: Grad-CAM hooks the network it runs
        self._explained_network: Any = None  # the network again, for gradients: loaded on the first /explain
        self._switching: asyncio.Task | None = None  # a first start's wait for the runtime choice

    def _load(self) -> Predictor:
        c = self.config
        predictor = Predictor.from_file(self.path, backend=c.backend, device=c.device, precision=c.precision,
                                        threads=self.threads, decode_threads=1, max_pixels=c.max_pixels,
                                        timing="later")
        self.version = file_version(Path(self.path))
        self.name = self.name or predictor.info.spec.arch
        return predictor

    async def _serve_with(self, predictor: Predictor) -> None:
        """Batch requests through ``predictor`` from now on (after a warm-up batch); the batcher it replaces
        finishes what it holds."""
        batcher = MicroBatcher(predictor.backend.run, self.config.max_batch, self.config.max_wait_ms / 1000,
                               self.config.max_queue, self.metrics.batch_observer(self.name))
        batcher.start()
        await batcher.submit(np.zeros(predictor.info.sample_shape(), np.float32))  # warm-up
        replaced = self.batcher
        self.predictor, self.batcher = predictor, batcher
        self.metrics.model.labels(self.name).info({
            "version": self.version, "backend": predictor.backend_name, "precision": predictor.precision,
            "device": str(predictor.device)})
        log.info("model %s (%s) ready: %s %s (%s)", self.name, self.path, predictor.backend_name,
                 predictor.precision, predictor.choice)
        if replaced is not None:
            await replaced.stop()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            predictor = await loop.run_in_executor(None, self._load)
            await self._serve_with(predictor)
        except Exception as e:  # shown by /readyz; the process stays up so the reason can be read
            self.load_error = f"{type(e).__name__}: {e}"
            log.error("model %s failed to load: %s", self.path, self.load_error)
            return
        pending = predictor.selection.pending if predictor.selection else None
        if pending is not None:
            predictor.selection.choose_in_background()
            self._switching = asyncio.create_task(self._switch_when_chosen(pending.key))

    async def _switch_when_chosen(self, key: str) -> None:
        """A first start serves a safe default while the runtimes are timed in the background: once the
        choice is remembered, serve with it."""
        while choosing(key):
            await asyncio.sleep(CHOICE_POLL_S)
        if recall(key) is None:
            log.warning("model %s: timing the runtimes failed (see %s); serving on with %s", self.name,
                        lock_path(key).with_suffix(".log"), self.predictor.selection.label)
            return
        try:
            predictor = await asyncio.get_running_loop().run_in_executor(None, self._load)
            if predictor.selection.label != self.predictor.selection.label:
                await self._serve_with(predictor)
        except Exception as e:  # the model serves on as it was
            log.error("model %s: could not switch to the runtime chosen: %s: %s", self.name, type(e).__name__, e)

    async def stop(self) -> None:
        if self._switching is not None:
            self._switching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._switching
        if self.batcher:
            await self.batcher.stop()

    @property
    def ready(self) -> bool:
        return self.predictor is not None

    def state(self) -> str:
        return "ready" if self.ready else f"failed: {self.load_error}" if self.load_error else "loading"

    def require_ready(self) -> Predictor:
        if self.predictor is None:
            what = f"model {self.name or self.path}"
            raise NotReadyError(f"{what} failed to load: {self.load_error}" if self.load_error else
                                f"{what} is still loading")
        return self.predictor

    @functools.cached_property
    def explain_refusal(self) -> str | None:
        """Why /explain cannot answer for this model, or None: it needs a reslab model file (gradients),
        torch and grad-cam. Found once: the file and the installed packages stay as they are while served."""
        import importlib.util

        reason = forward_only_reason(Path(self.path))
        if reason:
            return f"model {self.name}: {reason}"
        missing = [name for name in ("torch", "pytorch_grad_cam") if importlib.util.find_spec(name) is None]
        if missing:
            return f"heat-maps need {' and '.join(missing)} on the server: pip install 'reslab[torch,explain]'"
        return None

    def explain(self, data: bytes, filename: str, class_name: str | None, method: str) -> Any:
        """The Grad-CAM explanation of one upload (blocking: run it in a thread), on a copy of the network
        of its own, so that batched predictions go on undisturbed. A video model explains a video upload (its
        middle clip, for the video's class) within the same duration limit as /predict."""
        predictor = self.require_ready()
        image = None if self.video else predictor.decode(data, filename)
        from ..evaluate.explain import Explainer  # torch, grad-cam: a server of ONNX needs neither
        from ..models import load_model_file

        with self._explaining:
            if self._explained_network is None:
                self._explained_network, _ = load_model_file(self.path, predictor.device)
            explainer = Explainer(self._explained_network, predictor.info, method)
            if image is not None:
                return explainer.explain([image], class_name)[0]
            with self._video_upload(data, filename) as (source, decoder, _):
                return explainer.explain_video(source, class_name, decoder)

    def answer(self, probs: np.ndarray, topk: int) -> dict[str, Any]:
        """The top-k of one image's probabilities (and, multi-label, every label over its threshold)."""
        return answer(ranked(probs[None], self.require_ready().info, topk)[0])

    @property
    def video(self) -> bool:
        return self.require_ready().info.task == "video"

    def predict_video(self, data: bytes, filename: str, topk: int) -> dict[str, Any]:
        """One uploaded video's top-k (blocking: run it in a thread); longer than ``--max-video-s``: 413."""
        from ..infer.video import video_probabilities  # torch and torchcodec: for video models only

        predictor = self.require_ready()
        with self._video_upload(data, filename) as (source, decoder, seconds):
            probs = video_probabilities(predictor.backend, predictor.info, source, decoder)
        return {**self.answer(probs, topk), "seconds": seconds}

    @contextlib.contextmanager
    def _video_upload(self, data: bytes, filename: str):
        """The upload as a file, its source, an open decoder and its seconds; longer than ``--max-video-s``: 413."""
        from ..data.clips import open_video  # torchcodec: for video models only
        from ..data.splits import VideoSource
        from .limits import VideoTooLongError

        with tempfile.NamedTemporaryFile(suffix=Path(filename).suffix or ".mp4") as upload:
            upload.write(data)
            upload.flush()
            source = VideoSource(Path(upload.name))
            decoder = open_video(source)
            seconds = float(decoder.metadata.duration_seconds or 0.0)
            if seconds > self.config.max_video_s:
                raise VideoTooLongError(seconds, self.config.max_video_s)
            yield source, decoder, seconds

    def sample_shape(self) -> tuple[int, ...]:
        return self.require_ready().info.sample_shape()

    def info(self) -> dict[str, Any]:
        predictor = self.require_ready()
        pre = predictor.info.preprocess
        return {
            "model": self.name, "version": self.version, "file": self.path,
            "architecture": predictor.info.spec.arch, "classes": predictor.classes, "task": predictor.info.task,
            **({"thresholds": predictor.info.decision_thresholds} if predictor.info.multilabel else {}),
            "num_classes": len(predictor.classes),
            "input": {"shape": list(self.sample_shape()), "resize_size": pre.resize_size,
                      "mean": list(pre.mean), "std": list(pre.std), "interpolation": pre.interpolation},
            "backend": predictor.backend_name, "precision": predictor.precision,
            "precision_choice": predictor.choice, "device": str(predictor.device), "reslab": __version__,
            "explain": self.explain_refusal is None,
            "batching": {"max_batch": self.config.max_batch, "max_wait_ms": self.config.max_wait_ms},
            "limits": {"max_upload_mb": self.config.max_upload_mb, "max_pixels": self.config.max_pixels},
        }

    def summary(self) -> dict[str, Any]:
        """A line of ``GET /models``."""
        predictor = self.predictor
        return {"name": self.name, "file": self.path, "version": self.version, "state": self.state(),
                "backend": predictor.backend_name if predictor else None,
                "precision": predictor.precision if predictor else None}
