import os
import tempfile
from pathlib import Path

import pytest

from reslab.data.sample import materialize

# pytest-xdist's workers (`make test` runs one per core) share the cores: each computes on its share, and so
# do the processes its tests start, rather than every worker running one OpenMP thread per core
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // WORKERS)))

# converted models, exported graphs and remembered runtime choices go to a fresh folder, not the user's cache
# (servers started by the tests inherit it)
os.environ["RESLAB_CACHE"] = tempfile.mkdtemp(prefix="reslab-test-cache-")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


@pytest.fixture(scope="session")
def cifar_folder(tmp_path_factory) -> Path:
    """A real CIFAR-10 (JPEG copy) folder: 60 train, 12 val and 10 test images per class."""
    return materialize(SAMPLES / "cifar10-sample.npz", tmp_path_factory.mktemp("cifar"),
                       per_class={"train": 60, "val": 12, "test": 10})


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    return {p.stem: p for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".png")}


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """The smallest real folder a run can use: 16 train, 4 val and 4 test images per class."""
    return materialize(SAMPLES / "cifar10-sample.npz", tmp_path_factory.mktemp("tiny"),
                       per_class={"train": 16, "val": 4, "test": 4})


@pytest.fixture(scope="session")
def model_file(tmp_path_factory, cifar_folder) -> Path:
    """A briefly trained model file: real weights, real metadata."""
    from reslab.config import TrainConfig
    from reslab.train.trainer import Trainer

    out = tmp_path_factory.mktemp("runs")
    Trainer(TrainConfig(data=str(cifar_folder), model="resnet20", epochs=2, batch_size=32, out_dir=str(out),
                        name="m", lr=0.05)).fit()
    return out / "m" / "best.safetensors"


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """ResNet-20 trained by `make demo` on the shipped sample's train split (about 65% on its test split)."""
    return SAMPLES / "resnet20-cifar10-sample.safetensors"


@pytest.fixture(scope="session")
def sample_folder(tmp_path_factory) -> Path:
    """The whole shipped CIFAR-10 sample as a folder: 3,000 train, 600 val, 400 test images."""
    return materialize(SAMPLES / "cifar10-sample.npz", tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def without_torch(tmp_path_factory) -> dict[str, str]:
    """An environment whose Python cannot import torch or torchvision, as on a machine with only
    `pip install reslab[serve]`: a sitecustomize marks both as absent."""
    folder = tmp_path_factory.mktemp("no-torch")
    absent = 'import sys\nsys.modules["torch"] = None\nsys.modules["torchvision"] = None\n'
    (folder / "sitecustomize.py").write_text(absent)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="session")
def mosaic_folder(tmp_path_factory) -> Path:
    """A real multi-label set: 64 px pictures of two CIFAR-10 sample images each, labelled with both
    classes (``labels.csv`` with a split column): 200 train, 60 val, 60 test."""
    from reslab.data.sample import write_mosaics

    return write_mosaics(SAMPLES / "cifar10-sample.npz", tmp_path_factory.mktemp("mosaics"),
                         {"train": 200, "val": 60, "test": 60})


@pytest.fixture(scope="session")
def multilabel_model(tmp_path_factory, mosaic_folder) -> Path:
    """A briefly trained multi-label model file (thresholds tuned on val)."""
    from reslab.config import TrainConfig
    from reslab.train.trainer import Trainer

    out = tmp_path_factory.mktemp("multilabel-runs")
    Trainer(TrainConfig(data=str(mosaic_folder), task="multilabel", model="resnet20", epochs=2, batch_size=32,
                        out_dir=str(out), name="m", lr=0.05, device="cpu")).fit()
    return out / "m" / "best.safetensors"
