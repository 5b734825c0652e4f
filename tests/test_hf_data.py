"""Hugging Face datasets in (`--data hf:...`), built offline from the shipped CIFAR-10 sample with the real
datasets library: a save_to_disk folder and a folder of parquet files."""

import numpy as np
import pytest

from reslab.data.datasets import load_dataset

from .conftest import SAMPLES

datasets = pytest.importorskip("datasets")


def _split(arrays, name: str, per_class: int, label_feature, image_column="img", label_column="label"):
    blob, offsets, labels = arrays[f"{name}_jpeg"], arrays[f"{name}_offsets"], arrays[f"y_{name}"]
    picked = [i for c in range(10) for i in np.flatnonzero(labels == c)[:per_class]]
    rows = {image_column: [{"bytes": blob[offsets[i]:offsets[i + 1]].tobytes(), "path": None} for i in picked],
            label_column: [int(labels[i]) for i in picked]}
    features = datasets.Features({image_column: datasets.Image(), label_column: label_feature})
    return datasets.Dataset.from_dict(rows, features=features)


@pytest.fixture(scope="module")
def cifar_arrays():
    return np.load(SAMPLES / "cifar10-sample.npz")


@pytest.fixture(scope="module")
def saved_to_disk(cifar_arrays, tmp_path_factory):
    classes = datasets.ClassLabel(names=[str(c) for c in cifar_arrays["classes"]])
    dd = datasets.DatasetDict({"train": _split(cifar_arrays, "train", 12, classes),
                               "validation": _split(cifar_arrays, "val", 3, classes),
                               "test": _split(cifar_arrays, "test", 2, classes)})
    folder = tmp_path_factory.mktemp("hf") / "cifar-saved"
    dd.save_to_disk(str(folder))
    return folder


def test_a_save_to_disk_folder_keeps_its_splits_names_and_bytes(saved_to_disk, cifar_arrays, tmp_path):
    data = load_dataset(f"hf:{saved_to_disk}", tmp_path / "cache")
    assert data.classes == [str(c) for c in cifar_arrays["classes"]]
    assert (len(data.train), len(data.val), len(data.test)) == (120, 30, 20)  # validation is val, not a holdout
    first = np.flatnonzero(cifar_arrays["y_train"] == 0)[0]
    expected = cifar_arrays["train_jpeg"][cifar_arrays["train_offsets"][first]:cifar_arrays["train_offsets"][first + 1]]
    assert data.train.paths[0].read_bytes() == expected.tobytes() and data.train.labels[0] == 0
    again = load_dataset(f"hf:{saved_to_disk}", tmp_path / "cache")  # unpacked once, read again
    assert again.train.paths == data.train.paths


def test_parquet_files_without_validation_get_the_stratified_holdout(cifar_arrays, tmp_path):
    classes = datasets.ClassLabel(names=[str(c) for c in cifar_arrays["classes"]])
    folder = tmp_path / "parquet" / "data"
    folder.mkdir(parents=True)
    _split(cifar_arrays, "train", 20, classes).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    _split(cifar_arrays, "test", 2, classes).to_parquet(str(folder / "test-00000-of-00001.parquet"))
    data = load_dataset(f"hf:{tmp_path / 'parquet'}", tmp_path / "cache", seed=3)
    assert data.classes[0] == "airplane" and len(data.test) == 20
    assert (len(data.train), len(data.val)) == (180, 20)
    assert sorted(data.val.labels) == sorted(list(range(10)) * 2)  # 10% of every class


def test_columns_are_found_by_type_or_named(cifar_arrays, tmp_path):
    plain = _split(cifar_arrays, "train", 3, datasets.Value("int64"), image_column="picture", label_column="fine")
    plain.save_to_disk(str(tmp_path / "plain"))
    with pytest.raises(ValueError, match="no ClassLabel column found among picture, fine: name it with "
                                         "--label-column"):
        load_dataset(f"hf:{tmp_path / 'plain'}", tmp_path / "cache")
    data = load_dataset(f"hf:{tmp_path / 'plain'}", tmp_path / "cache", columns=(None, "fine"))
    assert data.classes == [str(i) for i in range(10)] and len(data.train) + len(data.val) == 30
    with pytest.raises(ValueError, match="--image-column 'photo': no such column"):
        load_dataset(f"hf:{tmp_path / 'plain'}", tmp_path / "cache", columns=("photo", "fine"))
    with pytest.raises(ValueError, match="neither a save_to_disk folder"):
        load_dataset(f"hf:{tmp_path}", tmp_path / "cache")


def test_training_and_evaluation_read_hf_data(saved_to_disk, tmp_path):
    from reslab.config import TrainConfig
    from reslab.evaluate.report import run_eval
    from reslab.train.trainer import Trainer

    cfg = TrainConfig(data=f"hf:{saved_to_disk}", model="resnet20", epochs=1, batch_size=32, out_dir=str(tmp_path),
                      name="hf", cache_dir=str(tmp_path / "cache"), amp=False)
    Trainer(cfg).fit()
    report = run_eval(tmp_path / "hf" / "best.safetensors", None, tmp_path / "eval", split="test",
                      cache_dir=tmp_path / "cache", workers=0)
    assert report.metrics["count"] == 20 and 0 <= report.metrics["top1"] <= 1
