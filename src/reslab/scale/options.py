"""What ``reslab predict-batch`` takes: flags, YAML and the Python API read these. Needs neither torch nor Ray."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import ModelSource, option


@dataclass(kw_only=True)
class PredictBatchCommand(ModelSource):
    input: str = option(positional=True, help="a folder (recursively), a .txt (one path or URI a line) or .parquet "
                        "(a 'path' column) list, one image, or a URI pyarrow reads (s3://bucket/photos/, gs://, "
                        "hdfs://, file://)")
    out: str = option("predictions.parquet", help="the output: a folder of Parquet part files (path, labels, "
                      "probabilities, predicted, [embedding], error, model, version), read whole by pyarrow, pandas "
                      "or Ray; run again with the same --out to go on where a run stopped")
    ray_address: str | None = option(None, help="the Ray cluster (ray://HOST:10001, or HOST:6379 from a node of it; "
                                     "default: $RAY_ADDRESS, else a local instance on this machine)")
    workers: int = option(1, help="actors holding a model each")
    threads_per_worker: int | None = option(None, help="threads of each worker's runtime (default: this machine's "
                                            "cores / --workers)")
    gpus_per_worker: float = option(0.0, help="GPUs of each worker (its model runs on the GPU with torch)")
    batch_size: int = option(64, help="images per call of a worker")
    topk: int = option(5, help="classes kept per image")
    embeddings: bool = option(False, help="also each image's feature vector (a reslab model file or name: torch)")
    backend: str = option("auto", help="each worker's runtime: auto | torch | onnxruntime | openvino")

    def __post_init__(self) -> None:
        for name in ("workers", "batch_size", "topk"):
            if getattr(self, name) < 1:
                raise ValueError(f"option {name!r} must be at least 1, got {getattr(self, name)}")
        if self.gpus_per_worker < 0:
            raise ValueError(f"option 'gpus_per_worker' must be 0 or more, got {self.gpus_per_worker}")
