from pathlib import Path

import pytest

from reslab.data.sample import materialize

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
