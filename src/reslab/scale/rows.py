"""One worker of ``predict-batch``: a ``Predictor`` (the same decoding, preprocessing and runtime as ``reslab
predict``, so that the answers are the same) turning a batch of files' bytes into output rows."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..data.images import UnreadableImageError
from ..infer.predictor import Predictor
from .parts import schema


def unpack_model(files: dict[str, bytes]) -> Path:
    """A model sent as its files' bytes (a model file, or OpenVINO's .xml with its .bin) -> the main file, written
    into a folder of this process: a worker on another machine does not see the driver's disk."""
    folder = Path(tempfile.mkdtemp(prefix="reslab-model-"))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder / next(iter(files))


class BatchRows:
    """Files' paths and bytes -> their rows (``parts.schema``): an image that cannot be decoded gets its error."""

    def __init__(self, path: Path, name: str, version: str, backend: str = "auto", device: str = "cpu",
                 threads: int | None = None, topk: int = 5, embeddings: bool = False) -> None:
        self.predictor = Predictor.from_file(path, backend=backend, device=device, threads=threads,
                                             decode_threads=threads)
        self.name, self.version, self.topk = name, version, topk
        self.features = None
        if embeddings:
            from ..models import load_model_file  # torch: only where embeddings are asked for

            self.features = load_model_file(path, device)[0].eval()
        self.schema = schema(self.features.num_features if self.features is not None else None)

    def table(self, paths: list[str], contents: list[bytes]):
        """The rows of the files, in their order."""
        import pyarrow as pa  # pyarrow: the ray extra

        answered: dict[str, dict] = {}
        images, kept = [], []
        for path, data in zip(paths, contents):
            try:
                images.append(self.predictor.decode(bytes(data), name=path))
                kept.append(path)
            except UnreadableImageError as e:
                answered[path] = {"error": str(e)}
        if images:
            x = self.predictor.preprocess(images)
            answers = self.predictor.postprocess(self.predictor.inference(x), self.topk)
            vectors = self._embed(x) if self.features is not None else [None] * len(kept)
            for path, predictions, vector in zip(kept, answers, vectors):
                multilabel = bool(predictions) and predictions[0].threshold is not None
                answered[path] = {"labels": [p.label for p in predictions],
                                  "probabilities": [p.probability for p in predictions],
                                  "predicted": [p.label for p in predictions if p.positive] if multilabel else None,
                                  "embedding": vector}
        rows = [{"path": path, "model": self.name, "version": self.version, **answered[path]} for path in paths]
        return pa.Table.from_pylist(rows, schema=self.schema)

    def _embed(self, x: np.ndarray) -> list[np.ndarray]:
        import torch  # with the embeddings' model

        from ..features.extract import pooled  # torch: with the embeddings

        with torch.inference_mode():
            device = next(self.features.parameters()).device
            return list(pooled(self.features, torch.from_numpy(x).to(device)).cpu().numpy())


class BatchPredictor:
    """Ray Data's callable class around ``BatchRows``: ``{"path": [...], "bytes": [...]}`` -> a pyarrow table of
    their rows, with the Ray node that made them (counted by the driver, not written)."""

    def __init__(self, model_files, **options) -> None:
        import ray  # a worker runs inside Ray

        if isinstance(model_files, ray.ObjectRef):
            model_files = ray.get(model_files)
        self.rows = BatchRows(unpack_model(model_files), **options)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa  # pyarrow: the ray extra

        table = self.rows.table([str(p) for p in batch["path"]], list(batch["bytes"]))
        return table.append_column("node", pa.array([self.node] * table.num_rows, pa.string()))
