"""What ``reslab embed`` and ``reslab probe`` take: flags, YAML and the Python API read these."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import ModelSource, device_option, option

KNN_K = 200  # the kNN classifier of self-supervised benchmarks (``knn``): neighbours,
KNN_TEMPERATURE = 0.1  # and the temperature of their votes


@dataclass(kw_only=True)
class EmbedCommand(ModelSource):
    inputs: list[str] = option(positional=True, nargs="+", help="image files or folders (recursively)")
    out: str = option("embeddings.parquet", help="the Parquet file written: path, embedding, error, model, version")
    batch_size: int = option(64, help="images per forward pass")
    device: str = device_option()


@dataclass(kw_only=True)
class ProbeCommand(ModelSource):
    data: str = option(required=True, help="labelled images: cifar10, cifar100, a folder of class folders (train/ "
                       "and test/ or val/), a pack or hf: data; train/'s features fit the probes, test/ (else val/) "
                       "scores them")
    k: int = option(KNN_K, help="neighbours of the kNN classifier")
    temperature: float = option(KNN_TEMPERATURE, help="the kNN's vote weights: exp(cosine similarity / temperature)")
    batch_size: int = option(256, help="images per forward pass")
    workers: int | None = option(None, help="data-loading processes (default: from the cores)")
    cache_dir: str | None = option(None, help="where cifar10/cifar100 and hf: data are kept")
    device: str = device_option()
