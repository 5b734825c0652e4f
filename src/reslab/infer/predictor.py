"""``Predictor``: any model file in, top-k classes out, with the model's own preprocessing.

Split as TorchServe's handlers are: ``preprocess`` (decode + the shared ``Preprocess``),
``inference`` (one batched call of the backend) and ``postprocess`` (top-k, class names). A single-label
model's outputs go through a softmax; a multi-label model's through a sigmoid per label, and each label
over its threshold (from the model file) is an answer.
The backend is PyTorch, ONNX Runtime or OpenVINO (``infer.backends``); the file's own metadata
says how to preprocess and what the classes are called. Preprocessing is NumPy and Pillow: with an ONNX
or OpenVINO file, nothing here imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
from PIL import Image

from ..data.images import UnreadableImageError, is_image_file, normalize_mode
from ..modelfile import ModelInfo
from ..names import is_plain_file
from .backends import Backend
from .selection import Selection, load_backend


@dataclass
class Prediction:
    index: int
    label: str
    probability: float
    threshold: float | None = None  # multi-label: the label's decision threshold

    @property
    def positive(self) -> bool:
        """Multi-label: the label is predicted (its probability reaches its threshold)."""
        return self.threshold is not None and self.probability >= self.threshold

    def to_dict(self) -> dict:
        answer: dict = {"index": self.index, "label": self.label, "probability": self.probability}
        if self.threshold is not None:
            answer.update(threshold=self.threshold, positive=self.positive)
        return answer


def expand_inputs(inputs: Sequence[str | Path], files: Callable[[Path], bool] = is_image_file) -> list[Path]:
    """Files as given, folders as the image files (or what ``files`` takes) inside them (recursively, sorted)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.is_file() and files(p))
        else:
            paths.append(item)
    return paths


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def probabilities_of(logits: np.ndarray, info: ModelInfo) -> np.ndarray:
    """The model's outputs as probabilities (float32): softmax over the classes, or each label's sigmoid."""
    logits = logits.astype(np.float64)
    probabilities = 1.0 / (1.0 + np.exp(-logits)) if info.multilabel else softmax(logits)
    return probabilities.astype(np.float32)


def ranked(probabilities: np.ndarray, info: ModelInfo, topk: int = 5) -> list[list[Prediction]]:
    """Each image's ``topk`` most probable classes; for a multi-label model also every label over its
    threshold, however many, each with its threshold."""
    cuts = info.decision_thresholds
    k = min(topk, probabilities.shape[1])
    answers = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")
        chosen = order[:k] if cuts is None else [i for n, i in enumerate(order) if n < k or row[i] >= cuts[i]]
        answers.append([Prediction(int(i), info.classes[int(i)], float(row[i]),
                                   None if cuts is None else float(cuts[i])) for i in chosen])
    return answers


def answer(predictions: list[Prediction]) -> dict:
    """One image's answer: its predictions, and for a multi-label model the labels predicted."""
    body: dict = {"predictions": [p.to_dict() for p in predictions]}
    if predictions and predictions[0].threshold is not None:
        body["labels"] = [p.label for p in predictions if p.positive]
    return body


ImageInput = Image.Image | bytes | str | Path
T = TypeVar("T")
R = TypeVar("R")


class Predictor:
    """``decode_threads``: images of a batch are decoded and resized in parallel (Pillow and torch
    release the GIL); the backend's own threads run the network afterwards, so they do not overlap."""

    def __init__(self, backend: Backend, info: ModelInfo, decode_threads: int | None = None,
                 max_pixels: int | None = None, selection: Selection | None = None) -> None:
        self.backend = backend
        self.info = info
        self.selection = selection
        self.decode_threads = decode_threads or min(4, os.cpu_count() or 1)
        self.max_pixels = max_pixels
        self._pool: ThreadPoolExecutor | None = None

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if len(items) < 2 or self.decode_threads < 2:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="reslab-decode")
        return list(self._pool.map(fn, items))

    @classmethod
    def from_file(cls, path: str | Path, backend: str = "auto", device: object = "cpu",
                  threads: int | None = None, decode_threads: int | None = None,
                  max_pixels: int | None = None, precision: str = "auto",
                  weights: str | Path | None = None, timing: Literal["now", "later"] = "now") -> Predictor:
        """``path``: a reslab model file, ONNX (fp32 or INT8), OpenVINO IR, TorchScript or ``.pt2``; or a name
        (``resnet50``, ``resnet50:IMAGENET1K_V2``, ``hf:microsoft/resnet-50``, see ``models.pretrained``), with
        ``weights`` a local checkpoint instead of the download. ``backend`` and ``precision`` may be ``auto``
        (see ``infer.selection``, which says what ``timing`` does)."""
        if not is_plain_file(path, weights):
            from ..models.pretrained import resolve_model  # downloads and converts with torch

            path = resolve_model(path, weights)
        selection = load_backend(path, backend, device, threads, precision=precision, timing=timing)
        return cls(selection.backend, selection.info, decode_threads, max_pixels, selection)

    @property
    def classes(self) -> list[str]:
        return self.info.classes

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def precision(self) -> str:
        return self.backend.precision

    @property
    def device(self) -> str:
        return getattr(self.backend, "device", "cpu")

    @property
    def choice(self) -> str:
        """How runtime and precision were chosen."""
        return self.selection.reason if self.selection else f"given: {self.backend.name} {self.precision}"

    def decode(self, image: ImageInput, name: str | None = None) -> Image.Image:
        """``name`` starts the message of an ``UnreadableImageError`` (default: the path, or ``<bytes>``)."""
        pre = self.info.preprocess
        if isinstance(image, Image.Image):
            return normalize_mode(image, pre.in_chans)
        return pre.open(image, max_pixels=self.max_pixels, name=name)

    def preprocess(self, images: Sequence[ImageInput], names: Sequence[str] | None = None) -> np.ndarray:
        """Decode and resize/crop each image, then normalise the whole uint8 batch at once."""
        pre = self.info.preprocess
        named = list(zip(images, names or [None] * len(images)))
        return pre.normalize(np.stack(self._map(lambda item: pre.geometry(self.decode(*item)), named)))

    def inference(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) of a preprocessed batch."""
        return probabilities_of(self.backend.run(batch), self.info)

    def postprocess(self, probabilities: np.ndarray, topk: int = 5) -> list[list[Prediction]]:
        return ranked(probabilities, self.info, topk)

    def predict(self, images: Sequence[ImageInput], topk: int = 5) -> list[list[Prediction]]:
        return self.postprocess(self.inference(self.preprocess(images)), topk)

    def _try_decode(self, path: Path) -> Image.Image | str:
        try:
            return self.decode(path)
        except UnreadableImageError as e:
            return str(e)
        except (FileNotFoundError, IsADirectoryError):
            return f"{path}: file not found"

    def predict_files(self, inputs: Sequence[str | Path], topk: int = 5, batch_size: int = 32,
                      segments: float | None = None) -> list[dict]:
        """One entry per image file: its top-k, or its error. An unreadable file does not stop the rest.
        A video model's entries are videos, with a timeline of ``segments``-second windows where asked."""
        if self.info.task == "video":
            return self._predict_videos(inputs, topk, segments)
        if segments is not None:
            raise ValueError("--segments is for video models; this model classifies images")
        results: list[dict] = []
        paths = expand_inputs(inputs)
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            decoded = self._map(self._try_decode, chunk)
            readable = [(p, img) for p, img in zip(chunk, decoded) if isinstance(img, Image.Image)]
            results += [{"file": str(p), "error": e} for p, e in zip(chunk, decoded) if isinstance(e, str)]
            if readable:
                predictions = self.predict([img for _, img in readable], topk)
                results += [{"file": str(p), **answer(preds)}
                            for (p, _), preds in zip(readable, predictions)]
        order = {str(p): i for i, p in enumerate(paths)}
        return sorted(results, key=lambda r: order.get(r["file"], -1))


    def _predict_videos(self, inputs: Sequence[str | Path], topk: int, segments: float | None) -> list[dict]:
        from ..data.videos import is_video_file  # torchcodec and torch: for video models only
        from .video import readable_video

        results = []
        for path in expand_inputs(inputs, is_video_file):
            answer_or_error = readable_video(self.backend, self.info, path, segments)
            if isinstance(answer_or_error, str):
                results.append({"file": str(path), "error": answer_or_error})
                continue
            whole = self.postprocess(answer_or_error["probabilities"][None], topk)[0]
            timeline = [{"start": start, "end": end, **answer(self.postprocess(p[None], topk)[0])}
                        for start, end, p in answer_or_error["segments"]]
            results.append({"file": str(path), **answer(whole), **({"segments": timeline} if timeline else {})})
        return results


def format_predictions(results: list[dict]) -> str:
    """One line per image: its top classes with their probabilities (and a multi-label model's labels)."""
    lines = []
    for entry in results:
        if "error" in entry:
            lines.append(f"{entry['file']}: ERROR {entry['error']}")
            continue
        top = "  ".join(f"{p['label']} {p['probability']:.3f}" for p in entry["predictions"])
        labels = f"  => labels: {', '.join(entry['labels']) or '(none)'}" if "labels" in entry else ""
        lines.append(f"{entry['file']}: {top}{labels}")
        lines += [f"  {row['start']:7.1f}-{row['end']:<7.1f}s  " + "  ".join(
            f"{p['label']} {p['probability']:.3f}" for p in row["predictions"]) for row in entry.get("segments", [])]
    return "\n".join(lines)
